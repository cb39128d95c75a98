"""The generated dataset follows the released MIMIC-ILS schema and reads with ROSALIA's contract (issue 12 item 4).

A real bundle run of the bundled sample (a MONOCHROME1 DICOM) is read back by a reader written here to the
contract of the public ROSALIA training code, not by monai-ils: ``json[split][study]``, ``image_path`` joined to a
base image folder and read with OpenCV, ``seg_mask_path`` joined to a base mask folder, PNG with foreground 255,
null for negatives.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monai_ils.data.ils_format import read_ils_json
from monai_ils.data.sample import sample_cxr_path
from monai_ils.data.sample_studies import SAMPLE_REPORT

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "bundles" / "ils_generation" / "configs" / "generation.json"

STUDY_FIELDS = ["subject_id", "study_id", "dicom_id", "image_path", "section_name", "section_content", "instruction_answer_pairs"]
OFFICIAL_PAIR_FIELDS = {"pair_id", "type", "instruction", "answer", "target", "seg", "seg_mask_path", "sent_idx"}


def read_grey(path: Path) -> np.ndarray:
    """What ROSALIA does: cv2.imread (PIL when OpenCV is not installed)."""
    try:
        import cv2
    except ImportError:
        from PIL import Image

        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, f"OpenCV cannot read {path}"
    return image


def rosalia_reader(json_path: Path, base_image_dir: Path, base_mask_dir: Path, split: str):
    """(study, pair, image, mask or None) per pair, by the contract only."""
    data = json.loads(json_path.read_text())[split]
    for study_key, item in data.items():
        image_path = item["image_path"]
        assert not os.path.isabs(image_path), image_path
        image = read_grey(base_image_dir / image_path)
        pairs = item["instruction_answer_pairs"]
        for pair in pairs["positive_pairs"] + pairs["negative_pairs"]:
            mask = None
            if pair["seg_mask_path"] is not None:
                assert not os.path.isabs(pair["seg_mask_path"])
                mask = read_grey(base_mask_dir / pair["seg_mask_path"]) == 255
            yield study_key, item, pair, image, mask


@pytest.fixture(scope="module")
def bundle_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG), "--output_dir", str(out), "--progress", "False"]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_sample_bundle_run_reads_back_through_the_rosalia_contract(bundle_run):
    out = bundle_run
    raw = json.loads((out / "dataset.json").read_text())
    assert list(raw) == ["train"] and list(raw["train"]) == ["RG1_UNCR"]
    study = raw["train"]["RG1_UNCR"]
    assert list(study) == STUDY_FIELDS
    assert study["image_path"] == "images/RG1_UNCR.png"  # the DICOM exported, relative: no path of this machine
    assert "site-packages" not in (out / "dataset.json").read_text()
    report = SAMPLE_REPORT.read_text()
    assert study["section_name"] in ("findings", "impression") and study["section_content"]
    assert " ".join(study["section_content"].split()) in " ".join(report.split())

    rows = list(rosalia_reader(out / "dataset.json", out, out, "train"))
    positives = [r for r in rows if r[2]["seg"]]
    negatives = [r for r in rows if not r[2]["seg"]]
    assert positives and negatives
    image = rows[0][3]
    assert image.dtype == np.uint8 and image.shape == (1955, 1841)
    assert image.min() == 0 and image.max() == 255  # full dynamic range

    # the exported pixels are the project's one image path on the DICOM (LoadCXR: MONOCHROME1 inverted, then
    # ScaleCXRIntensity), hand-checked against pydicom: inverted min-max of the stored values
    import pydicom

    stored = pydicom.dcmread(str(sample_cxr_path())).pixel_array.astype(np.float64)
    inverted = stored.max() - stored
    expected = np.round((inverted - inverted.min()) / (inverted.max() - inverted.min()) * 255)
    assert np.array_equal(image, expected.astype(np.uint8))

    pair_ids = [r[2]["pair_id"] for r in rows]
    assert len(set(pair_ids)) == len(pair_ids)
    for _, _, pair, img, mask in positives:
        assert OFFICIAL_PAIR_FIELDS | {"reported_location", "grounded_location"} <= set(pair)
        assert pair["type"] in ("basic", "global", "lesion_inference") and pair["answer"].startswith("[SEG]")
        assert mask is not None and mask.shape == img.shape and mask.any()
        assert pair["grounded_location"] and set(pair["grounded_location"]) <= set(pair["reported_location"])
        assert isinstance(pair["sent_idx"], int) and pair["sent_idx"] >= 1
    for _, _, pair, _, mask in negatives:
        assert OFFICIAL_PAIR_FIELDS | {"location"} <= set(pair)
        assert pair["seg_mask_path"] is None and mask is None and "grounded_location" not in pair
        assert pair["answer"].startswith("[SEG] There is no ")
    # "No pleural effusion." is a sentence of the section: the effusion negative points at it
    [effusion] = [p for _, _, p, _, _ in negatives if p["target"] == "effusion"]
    assert isinstance(effusion["sent_idx"], int)

    # our reader (training, evaluation, inference) reads the same file with the same meaning
    samples = read_ils_json(out / "dataset.json")
    assert [s.instruction for s in samples] == [r[2]["instruction"] for r in rows]
    assert all(s.image_path == str(out / "images" / "RG1_UNCR.png") for s in samples)
    assert [s.question_type for s in samples] == [r[2]["type"] for r in rows]
    assert all(s.extra["section_content"] == study["section_content"] and s.extra["pair_id"] for s in samples)


def test_in_place_images_are_relative_to_the_dataset_folder(tmp_path):
    """An 8-bit PNG input is not copied (export_images auto): its path is written relative to the dataset folder."""
    from PIL import Image

    from monai_ils.data.mimic_cxr import CSVStudyIndex
    from monai_ils.generation.pairs import PairGenerator
    from monai_ils.generation.processor import PairsProcessor
    from monai_ils.generation.qc import StudyQC
    from monai_ils.generation.runner import GenerationRunner
    from tests.generation.gen_fixtures import toy_grounder, write_study_csv

    csv_path = write_study_csv(tmp_path / "in", 2)
    (tmp_path / "in" / "images").mkdir()
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(tmp_path / "in" / "images" / "img0000.png")
    Image.fromarray(np.full((32, 32), 1000, np.uint16)).save(tmp_path / "in" / "images" / "img0001.png")  # 16-bit
    out = tmp_path / "out"
    GenerationRunner(out, PairsProcessor(toy_grounder, PairGenerator(seed=5), StudyQC(require_view=False)),
                     progress=False).run(CSVStudyIndex(csv_path))
    raw = json.loads((out / "dataset.json").read_text())
    studies = {key: entry for split in raw.values() for key, entry in split.items()}
    assert studies["st0000"]["image_path"] == "../in/images/img0000.png"  # kept in place
    assert studies["st0001"]["image_path"] == "images/st0001.png"  # 16-bit: OpenCV would shift it to black
    assert not (out / "images" / "st0000.png").exists()
    assert read_grey(out / studies["st0000"]["image_path"]).mean() == 100


def test_export_images_true_false_and_a_typo(tmp_path):
    from monai_ils.data.mimic_cxr import CSVStudyIndex
    from monai_ils.generation.pairs import PairGenerator
    from monai_ils.generation.processor import PairsProcessor
    from monai_ils.generation.qc import StudyQC
    from monai_ils.generation.runner import GenerationRunner
    from tests.generation.gen_fixtures import toy_grounder, write_study_csv

    csv_path = write_study_csv(tmp_path / "in", 2)  # image files that do not exist: only the mode decides
    for mode, expected in (("false", "../in/images/img0000.png"), (True, "images/st0000.png")):
        out = tmp_path / f"out-{mode}"
        processor = PairsProcessor(toy_grounder, PairGenerator(seed=5), StudyQC(require_view=False), export_images=mode)
        GenerationRunner(out, processor, progress=False).run(CSVStudyIndex(csv_path))
        assert json.loads((out / "dataset.json").read_text())["train"]["st0000"]["image_path"] == expected
    with pytest.raises(ValueError, match="export_images must be auto, true or false .*got 'sometimes'"):
        PairsProcessor(toy_grounder, export_images="sometimes")
