"""The evaluate and inference bundles end to end on a tiny model and a tiny split."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_ils.data.ils_format import load_mask_png, read_ils_json

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundles" / "rosalia" / "configs"


def _iou(pred, target):
    union = np.count_nonzero(pred | target)
    return 1.0 if union == 0 else np.count_nonzero(pred & target) / union


def test_evaluate_bundle_command(tiny_model_dir, tiny_dataset, tmp_path):
    out = tmp_path / "eval"
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(CONFIGS / "evaluate.json"),
        "--checkpoint_dir", str(tiny_model_dir),
        "--dataset_json", str(tiny_dataset),
        "--output_dir", str(out),
        "--device", "cpu",
        "--max_new_tokens", "6",
        "--num_overlays", "4",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    samples = read_ils_json(tiny_dataset, splits=["test"])
    records = [json.loads(line) for line in (out / "predictions" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(samples) == 15
    assert all(r["mode"] == "generate" and isinstance(r["text"], str) for r in records)

    # recompute the headline numbers from the written PNGs, independently of the package
    ious, inter, union, empty_ok = [], 0, 0, []
    for sample, record in zip(samples, records):
        assert record["instruction"] == sample.instruction
        pred = np.asarray(Image.open(out / "predictions" / record["mask_path"])) > 0
        assert pred.shape == np.asarray(Image.open(sample.image_path)).shape
        if sample.positive:
            target = load_mask_png(sample.seg_mask_path)
            ious.append(_iou(pred, target))
            inter += np.count_nonzero(pred & target)
            union += np.count_nonzero(pred | target)
        else:
            empty_ok.append(not pred.any())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_positive"] == 9 and summary["n_negative"] == 6 and summary["n_text"] == 15
    assert summary["giou"] == pytest.approx(np.mean(ious))
    assert summary["ciou"] == pytest.approx(inter / union)
    assert summary["nacc"] == pytest.approx(np.mean(empty_ok))
    assert summary["cache"]["encoded_images"] == 3  # three images, fifteen instructions

    results = (out / "results.md").read_text()
    for title in ("per lesion type", "per question type", "Text accuracy (%) per question type", "per lesion and question type"):
        assert title in results
    with open(out / "segmentation_by_lesion.csv") as f:
        rows = {row[0]: row for row in csv.reader(f)}
    assert rows["Total"][1] == f"{100 * np.mean(ious):.1f}"
    assert set(rows) >= {"Pneumonia", "Atelectasis", "Edema", "Effusion", "Cardiomegaly"}
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 1 and Image.open(overlays[0]).size[0] > 500

    # scoring existing predictions: no model is loaded, the numbers are the same
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIGS / "evaluate.json")
    parser.update({"run_inference": False, "checkpoint_dir": str(tmp_path / "no_model"), "dataset_json": str(tiny_dataset),
                   "predictions_dir": str(out / "predictions"), "output_dir": str(tmp_path / "rescored"), "num_overlays": 0})
    parser.get_parsed_content("run")
    rescored = json.loads((tmp_path / "rescored" / "summary.json").read_text())
    assert {k: rescored[k] for k in ("giou", "ciou", "nacc", "text_accuracy")} == {k: summary[k] for k in ("giou", "ciou", "nacc", "text_accuracy")}
    assert "cache" not in rescored and rescored["overlays"] == []


def test_inference_bundle_config(tiny_model_dir, tiny_dataset, tmp_path):
    """inference.json parsed and run in-process (the same code path as `monai.bundle run`)."""
    from monai.bundle import ConfigParser

    requests = tmp_path / "requests.jsonl"
    image = read_ils_json(tiny_dataset)[0].image_path
    requests.write_text(
        "\n".join(json.dumps({"image": image, "instruction": t, "id": f"r{i}"}) for i, t in enumerate(["Segment the edema.", "Segment the effusion in the left lung."]))
    )
    parser = ConfigParser()
    parser.read_config(CONFIGS / "inference.json")
    parser.update({"checkpoint_dir": str(tiny_model_dir), "requests_file": str(requests), "output_dir": str(tmp_path / "pred"), "device": "cpu", "mode": "segment"})
    parser.get_parsed_content("run")
    records = [json.loads(line) for line in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["r0", "r1"]
    assert all(r["text"] is None and r["n_seg"] == 1 for r in records)
    assert load_mask_png(tmp_path / "pred" / records[0]["mask_path"]).shape == np.asarray(Image.open(image)).shape


def test_generation_options_of_inference_json_reach_the_predictor(tiny_model_dir):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[2] / "bundles" / "rosalia" / "configs" / "inference.json"))
    parser.update({"checkpoint_dir": str(tiny_model_dir), "device": "cpu", "generation_kwargs": {"num_beams": 2}})
    predictor = parser.get_parsed_content("predictor")
    assert predictor.generation_kwargs == {"num_beams": 2}
