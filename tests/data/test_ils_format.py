"""Dataset formats: our/ROSALIA JSON round trip, PNG masks (255), JSONL stream, the official release layout."""

import json

import numpy as np
import pytest
from PIL import Image

from monai_ils.data.ils_format import (
    DatasetFormatError,
    ILSSample,
    iter_ils_jsonl,
    load_mask_png,
    read_ils_json,
    save_mask_png,
    write_ils_json,
    write_ils_json_stream,
    write_ils_jsonl,
)


def make_samples(root):
    mask = np.zeros((6, 5), bool)
    mask[2:4, 1:3] = True
    mask_path = save_mask_png(mask, root / "masks" / "s1" / "pneumonia_0.png")
    image = str(root / "images" / "a.png")
    return mask, [
        ILSSample("train", "s1", image, "Segment the pneumonia in the right lung base.", "[SEG]", "pneumonia", True,
                  str(mask_path), "basic", ["right lung base"], "definitive"),
        ILSSample("train", "s1", image, "Segment the opacity in the right lung base and predict its type.",
                  "[SEG] It is highly suggestive of pneumonia.", "pneumonia", True, str(mask_path), "lesion_inference",
                  ["right lung base"], "definitive", "pneumonia"),
        ILSSample("train", "s1", image, "Segment the edema.", "[SEG] There is no edema.", "edema", False, None, "global", []),
        ILSSample("test", "s2", str(root / "images" / "b.png"), "Segment the effusion in the left lung.",
                  "[SEG] There is no effusion in the left lung.", "effusion", False, None, "basic", ["left lung"]),
    ]


def test_mask_png_is_binary_255_and_reads_back(tmp_path):
    mask = np.zeros((1, 7, 9), dtype=np.float32)
    mask[0, 1:5, 2:4] = 0.7
    path = save_mask_png(mask, tmp_path / "m.png")
    with Image.open(path) as image:
        assert image.mode == "L" and image.size == (9, 7)
        values = np.asarray(image)
    assert set(np.unique(values)) == {0, 255} and (values == 255).sum() == 8
    assert np.array_equal(load_mask_png(path), mask[0] > 0)
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, no leftovers
    with pytest.raises(ValueError, match="2-D mask"):
        save_mask_png(np.zeros((2, 3, 4)), tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_mask_png(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_text("not a png")
    with pytest.raises(DatasetFormatError, match="junk.png"):
        load_mask_png(tmp_path / "junk.png")


def test_json_round_trip_with_relative_paths(tmp_path):
    mask, samples = make_samples(tmp_path)
    path = write_ils_json(tmp_path / "dataset.json", samples)
    raw = json.loads(path.read_text())
    assert list(raw) == ["train", "test"]
    entry = raw["train"]["s1"]
    # the released MIMIC-ILS schema: study fields (null when unknown), then the pairs
    assert list(entry) == ["subject_id", "study_id", "dicom_id", "image_path", "section_name", "section_content", "instruction_answer_pairs"]
    assert entry["image_path"] == "images/a.png" and entry["subject_id"] is None
    pair = entry["instruction_answer_pairs"]["positive_pairs"][0]
    assert pair == {"pair_id": "s1_0", "type": "basic", "instruction": "Segment the pneumonia in the right lung base.", "answer": "[SEG]",
                    "target": "pneumonia", "seg": True, "seg_mask_path": "masks/s1/pneumonia_0.png", "sent_idx": None,
                    "reported_location": [], "grounded_location": [], "location": ["right lung base"],
                    "certainty": "definitive", "lesion": None}
    negative = entry["instruction_answer_pairs"]["negative_pairs"][0]
    assert (negative["pair_id"], negative["seg"], negative["seg_mask_path"], negative["location"]) == ("s1_2", False, None, [])
    assert "grounded_location" not in negative and "reported_location" not in negative
    back = read_ils_json(path)
    assert [s.extra.pop("pair_id") for s in back] == ["s1_0", "s1_1", "s1_2", "s2_0"]  # numbered by the writer
    assert back == samples
    assert np.array_equal(back[0].load_mask(), mask)
    assert not back[2].load_mask((6, 5)).any()
    assert [s.study_key for s in read_ils_json(path, splits=["test"])] == ["s2"]


def test_stream_writer_equals_batch_writer(tmp_path):
    _, samples = make_samples(tmp_path)
    write_ils_json(tmp_path / "a.json", samples)
    write_ils_json_stream(tmp_path / "b.json", [("train", iter([samples[:3]])), ("test", iter([samples[3:]]))])
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_jsonl_round_trip_and_line_errors(tmp_path):
    _, samples = make_samples(tmp_path)
    path = write_ils_jsonl(tmp_path / "pairs.jsonl", samples[:2], root=tmp_path)
    write_ils_jsonl(path, samples[2:], append=True, root=tmp_path)
    first = json.loads(path.read_text().splitlines()[0])
    assert first["seg_mask_path"] == "masks/s1/pneumonia_0.png"
    assert list(iter_ils_jsonl(path)) == samples
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(DatasetFormatError, match=r"pairs.jsonl:5"):
        list(iter_ils_jsonl(path))


def release_entry():
    return {
        "dicom_id": "d1",
        "report": "Small right effusion.",
        "section_qa": {
            "grounded_major_lesion": {
                "effusion": [
                    {
                        "target": "effusion",
                        "certainty": "Definitive",
                        "grounded_location": "right lung base",
                        "reported_location": "right lung base",
                        "question": ["Segment the effusion.", "Segment the effusion in the right lung base."],
                        "answer": ["[SEG] It is located in the right lung base.", "[SEG]"],
                        "seg": True,
                        "seg_mask_path": "s9_findings/effusion_lesion_mask.png",
                    }
                ],
                "atelectasis": [
                    {
                        "target": "atelectasis",
                        "certainty": "Tentative",
                        "grounded_location": "right lung base",
                        "reported_location": "left lung base, right lung base",
                        "question": ["Segment the opacity in the right lung base.",
                                     "Segment the opacity in the right lung base and predict its type."],
                        "answer": ["[SEG]", "[SEG] It possibly reflects atelectasis."],
                        "seg": True,
                        "seg_mask_path": "s9_findings/atelectasis_lesion_mask.png",
                    }
                ],
            },
            "not_reported_major_lesion": [
                {
                    "target": ["edema", "opacity"],
                    "question": ["Segment the edema.", "Segment the opacity in the left lung."],
                    "answer": ["[SEG] There is no edema.", "[SEG] There is no opacity in the left lung."],
                    "seg": False,
                }
            ],
            "count": 3,
        },
    }


def test_reads_the_official_release_layout(tmp_path):
    path = tmp_path / "mimic_ils.json"
    path.write_text(json.dumps({"train": {"s9_findings": release_entry()}, "val": {}}))
    samples = read_ils_json(path, image_root=tmp_path / "base", mask_root=tmp_path / "base" / "seg_mask")
    assert len(samples) == 6
    first = samples[0]
    assert first.split == "train" and first.study_key == "s9_findings"
    assert first.image_path == str(tmp_path / "base" / "mimic-cxr-dcm-png-histeq" / "d1.png")
    assert first.seg_mask_path == str(tmp_path / "base" / "seg_mask" / "s9_findings" / "effusion_lesion_mask.png")
    assert (first.question_type, first.location, first.certainty, first.positive) == ("global", ["right lung base"], "definitive", True)
    assert first.extra["qa_type"] == "grounded_major_lesion"
    tentative = samples[2]
    assert (tentative.target, tentative.question_type, tentative.location) == ("atelectasis", "basic", ["right lung base"])
    inference = samples[3]
    assert (inference.question_type, inference.lesion, inference.certainty) == ("lesion_inference", "atelectasis", "tentative")
    negatives = samples[4:]
    assert [(s.target, s.question_type, s.positive, s.seg_mask_path) for s in negatives] == [
        ("edema", "global", False, None), ("opacity", "basic", False, None)]
    assert negatives[1].location == ["left lung"]
    custom = read_ils_json(path, image_root=tmp_path, release_image_pattern="png/{dicom_id}.png")
    assert custom[0].image_path == str(tmp_path / "png" / "d1.png")


def test_reads_release_without_split_level_and_flat_records(tmp_path):
    entry = {**release_entry(), "split": "test"}
    path = tmp_path / "merged.json"
    path.write_text(json.dumps({"s9_findings": entry}))
    assert {s.split for s in read_ils_json(path)} == {"test"}
    record = {"dicom_id": "d2", "section_id": "s3_impression", "target": "edema", "question": ["Segment the edema."],
              "answer": ["[SEG] It is located in the left lung."], "seg": True, "seg_mask_path": "m.png"}
    path.write_text(json.dumps([record]))
    [sample] = read_ils_json(path)
    assert (sample.split, sample.study_key, sample.location) == ("all", "s3_impression", ["left lung"])


def test_format_errors_name_file_and_entry(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{")
    with pytest.raises(DatasetFormatError, match="bad.json: not valid JSON"):
        read_ils_json(path)
    path.write_text(json.dumps({"train": {"s1": {"image_path": "a.png"}}}))
    with pytest.raises(DatasetFormatError, match=r"train/s1: 'instruction_answer_pairs'"):
        read_ils_json(path)
    path.write_text(json.dumps({"train": {"s1": {"image_path": "a.png", "instruction_answer_pairs": {"positive_pairs": [
        {"instruction": "Segment the edema.", "answer": "[SEG] It is located in the left lung.", "target": "edema"}]}}}}))
    with pytest.raises(DatasetFormatError, match=r"positive_pairs\[0\]: a positive pair needs 'seg_mask_path'"):
        read_ils_json(path)
    entry = release_entry()
    entry["section_qa"]["not_reported_major_lesion"][0]["answer"] = ["only one"]
    path.write_text(json.dumps({"train": {"s9": entry}}))
    with pytest.raises(DatasetFormatError, match=r"s9/not_reported_major_lesion\[0\]: 'question' and 'answer'"):
        read_ils_json(path)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        read_ils_json(tmp_path / "nowhere.json")
