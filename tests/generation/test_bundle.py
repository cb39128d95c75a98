"""End to end through the bundle command: the bundled sample plus a corrupt DICOM and an empty report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from monai_ils.data.ils_format import load_mask_png, read_ils_json
from monai_ils.data.sample import sample_cxr_path
from monai_ils.data.sample_studies import SAMPLE_REPORT, sample_study_records

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "ils_generation"
CONFIG = BUNDLE / "configs" / "generation.json"


def test_bundle_command_on_the_sample_with_a_corrupt_dicom_and_an_empty_report(tmp_path):
    (tmp_path / "corrupt.dcm").write_bytes(b"DICM" + bytes(range(256)) * 8)
    studies = tmp_path / "studies.csv"
    studies.write_text(
        "study_id,image,report_path,report,view_position\n"
        f"RG1_UNCR,{sample_cxr_path()},{SAMPLE_REPORT},,PA\n"
        f"broken,corrupt.dcm,{SAMPLE_REPORT},,PA\n"
        f"silent,{sample_cxr_path()},,,PA\n"
    )
    out = tmp_path / "out"
    sample_thresholds = json.loads(CONFIG.read_text())["sample_thresholds"]
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG), "--output_dir", str(out),
               "--input", str(studies), "--thresholds", json.dumps(sample_thresholds), "--progress", "False"]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["studies"], summary["ok"], summary["errors"], summary["skipped"]) == (3, 1, 1, 1)
    records = {r["key"]: r for r in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert set(records) == {"broken", "silent"}
    assert records["broken"]["status"] == "error" and records["broken"]["error"]["stage"] == "load"
    assert "corrupt.dcm" in records["broken"]["error"]["message"] and records["broken"]["error"]["where"]
    assert records["silent"]["status"] == "skipped" and "empty report" in records["silent"]["reason"]

    samples = read_ils_json(out / "dataset.json")
    assert {s.study_key for s in samples} == {"RG1_UNCR"}
    positives = [s for s in samples if s.positive]
    assert positives and all(s.target == "opacity" and s.question_type == "basic" for s in positives)
    # the report's right-lower-zone opacity: its mask lies in the image's left half (patient right), lower half
    [right_base] = [s for s in positives if s.location == ["right lung base"]]
    mask = load_mask_png(right_base.seg_mask_path)
    assert mask.shape == (1955, 1841)
    rows, cols = np.nonzero(mask)
    assert cols.mean() < 1841 / 2 and rows.mean() > 1955 / 2
    for sample in positives:
        assert (out / "overlays" / Path(sample.seg_mask_path).relative_to(out / "masks")).with_suffix(".jpg").is_file()
    negatives = [s for s in samples if not s.positive]
    assert "effusion" in {s.target for s in negatives}  # "No pleural effusion."
    reported = {"right lung base", "left mid zone lung", "left lung base", "right mid zone lung", "right apical zone lung"}
    assert not any(set(s.location) & reported for s in negatives)  # negatives point at empty regions only
    assert (out / "statistics.png").is_file() and "### train" in (out / "statistics.md").read_text()

    # the same run over two worker processes (the real pipeline pickled into each) writes the same bytes
    parallel = tmp_path / "parallel"
    command[command.index(str(out))] = str(parallel)
    done = subprocess.run(command + ["--num_workers", "2"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _tree_bytes(parallel) == _tree_bytes(out)


def _tree_bytes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_default_input_is_the_bundled_sample_with_its_thresholds():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIG))
    parser.read_meta(str(CONFIG.parent / "metadata.json"))
    assert parser.get_parsed_content("studies") == sample_study_records()
    assert parser.get_parsed_content("run_thresholds") == parser["sample_thresholds"]
    parser["input"] = "/data/somewhere.csv"
    assert parser.get_parsed_content("run_thresholds", lazy=False) == parser["thresholds"]
    for name in ("configs/metadata.json", "configs/logging.conf", "docs/README.md", "LICENSE"):
        assert (BUNDLE / name).is_file()
    assert "python -m monai.bundle run --config_file bundles/ils_generation/configs/generation.json" in (BUNDLE / "docs" / "README.md").read_text()
