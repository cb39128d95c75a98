"""The generation bundle with ``--export_dicom True`` on the bundled sample writes a SEG and an SR that
dciodvfy accepts, records them in the shard line, and a resumed run keeps them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pydicom

from tests.dicom.conftest import dciodvfy_errors

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "bundles" / "ils_generation" / "configs" / "generation.json"


def test_export_dicom_is_off_by_default():
    config = json.loads(CONFIG.read_text())
    assert config["export_dicom"] is False
    assert config["processor"]["dicom_exporter"] == "@dicom_exporter"


def _run(out):
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG), "--output_dir", str(out),
               "--export_dicom", "True", "--progress", "False"]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_sample_bundle_exports_seg_and_sr(tmp_path):
    out = tmp_path / "out"
    _run(out)
    folder = out / "dicom" / "RG1_UNCR"
    assert sorted(p.name for p in folder.iterdir()) == ["seg.dcm", "sr.dcm"]
    for name in ("seg.dcm", "sr.dcm"):
        assert dciodvfy_errors(folder / name) == [], name
    [line] = [json.loads(raw) for raw in (out / "shards" / "shard-00000.jsonl").read_text().splitlines()]
    assert line["info"]["dicom"] == {"seg": "dicom/RG1_UNCR/seg.dcm", "sr": "dicom/RG1_UNCR/sr.dcm"}
    seg = hd.seg.segread(str(folder / "seg.dcm"))
    labels = [seg.get_segment_description(n).SegmentLabel for n in seg.get_segment_numbers()]
    positives = [s for s in map(json.loads, (out / "pairs.jsonl").read_text().splitlines()) if s.get("seg_mask_path")]
    assert labels and set(labels) == {s["target"] for s in positives}  # the sample's grounded opacities
    sr = pydicom.dcmread(str(folder / "sr.dcm"))
    assert sr.StudyInstanceUID == seg.StudyInstanceUID
    first = seg.SOPInstanceUID
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    _run(out)  # resume: the study is done, nothing is rewritten
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert hd.seg.segread(str(folder / "seg.dcm")).SOPInstanceUID == first
