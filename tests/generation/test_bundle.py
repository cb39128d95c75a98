"""End to end through the bundle: the README's command on the bundled sample, and bad studies recorded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monai_ils.data.ils_format import load_mask_png, read_ils_json

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "bundles" / "ils_generation" / "configs" / "generation.json"


def test_readme_command_on_the_sample(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG), "--output_dir", str(out), "--progress", "False"]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["studies"], summary["ok"], summary["errors"]) == (1, 1, 0)
    samples = read_ils_json(out / "dataset.json")
    positives = [s for s in samples if s.positive]
    assert positives and all(s.target == "opacity" and s.question_type == "basic" for s in positives)
    # the report's right-lower-zone opacity: its mask lies in the image's left half (patient right), lower half
    [right_base] = [s for s in positives if s.location == ["right lung base"]]
    mask = load_mask_png(right_base.seg_mask_path)
    assert mask.shape == (1955, 1841)
    rows, cols = np.nonzero(mask)
    assert cols.mean() < 1841 / 2 and rows.mean() > 1955 / 2
    for sample in positives:
        overlay = out / "overlays" / Path(sample.seg_mask_path).relative_to(out / "masks")
        assert overlay.is_file()
    negatives = [s for s in samples if not s.positive]
    assert {s.target for s in negatives} >= {"effusion"}  # "No pleural effusion."
    assert all(s.location == [] or s.location[0] not in ("right lung base",) for s in negatives)
    assert (out / "statistics.png").is_file() and "### train" in (out / "statistics.md").read_text()
    assert (out / "errors.jsonl").read_text() == ""


def test_corrupt_dicom_and_empty_report_are_recorded_and_skipped(tmp_path):
    from monai.bundle import run

    from monai_ils.data.sample import sample_cxr_path
    from monai_ils.data.sample_studies import SAMPLE_REPORT

    (tmp_path / "corrupt.dcm").write_bytes(b"DICM" + bytes(range(256)) * 8)
    studies = tmp_path / "studies.csv"
    studies.write_text(
        "study_id,image,report_path,report,view_position\n"
        f"good,{sample_cxr_path()},{SAMPLE_REPORT},,PA\n"
        f"broken,corrupt.dcm,{SAMPLE_REPORT},,PA\n"
        f"silent,{sample_cxr_path()},,,PA\n"
    )
    out = tmp_path / "out"
    run(config_file=str(CONFIG), input=str(studies), output_dir=str(out), progress=False,
        thresholds={"general": {"anatomy": 0.1, "size": 0.03}})
    records = {r["key"]: r for r in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert set(records) == {"broken", "silent"}
    assert records["broken"]["status"] == "error" and records["broken"]["error"]["stage"] == "load"
    assert "corrupt.dcm" in records["broken"]["error"]["message"]
    assert records["silent"]["status"] == "skipped" and "empty report" in records["silent"]["reason"]
    samples = read_ils_json(out / "dataset.json")
    assert {s.study_key for s in samples} == {"good"} and any(s.positive for s in samples)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["errors"], summary["skipped"]) == (1, 1, 1)


@pytest.mark.parametrize("name", ["metadata.json", "logging.conf"])
def test_bundle_files_present(name):
    assert (CONFIG.parent / name).is_file()
    assert (CONFIG.parents[1] / "LICENSE").is_file() and (CONFIG.parents[1] / "docs" / "README.md").is_file()
