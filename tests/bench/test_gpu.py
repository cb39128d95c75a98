"""The prepared GPU check: its dry run exercises every section on CPU, and sections stay independent."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from monai_ils.bench import gpu


def test_dry_run_writes_both_reports_with_every_section_ok(tmp_path):
    done = subprocess.run([sys.executable, "-m", "monai_ils.bench", "gpu", "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    sections = report["sections"]
    assert list(sections) == list(gpu.SECTIONS)
    assert {name: s["status"] for name, s in sections.items()} == {name: "ok" for name in gpu.SECTIONS}
    assert report["meta"]["dry_run"] is True and report["meta"]["target"]["segment"] == 50.0
    assert sections["environment"]["deepspeed"][0].isdigit()  # a version, not "missing (...)"
    inference = sections["inference"]
    # every mode x batch size x cache on/off; without the cache each request encodes its image again
    assert len(inference["runs"]) == 2 * len(gpu.DRY.batch_sizes) * 2
    for run in inference["runs"]:
        assert run["samples_per_s"] > 0
        assert run["encoder_runs"] == (gpu.DRY.images if run["cache"] else inference["samples"])
    for mode in ("pixels", "cache"):
        assert sections["train"][mode]["samples_per_s"] > 0
    assert [r["batch"] for r in sections["radedit"]["runs"]] == list(gpu.DRY.radedit_batches)
    assert all(r["s_per_image"] > 0 for r in sections["radedit"]["runs"])
    for name in ("cxas", "hybridgnet", "yolo"):
        assert all(r["images_per_s"] > 0 for r in sections[name]["runs"]), name
    markdown = (tmp_path / "gpu_report.md").read_text()
    assert "dry run" in markdown and "| generate | 2 | yes |" in markdown and "## RadEdit (32², 2 DDIM steps" in markdown
    assert str(tmp_path) not in markdown  # no machine paths in the report


def test_a_failing_or_overrunning_section_is_recorded_and_the_next_runs(monkeypatch, tmp_path):
    def broken(ctx):
        ctx.partial = {"runs": [{"batch": 1}]}
        raise RuntimeError("CUDA out of memory (planted)")

    def endless(ctx):
        while True:
            time.sleep(0.01)

    monkeypatch.setitem(gpu.SECTIONS, "broken", broken)
    monkeypatch.setitem(gpu.SECTIONS, "endless", endless)
    sizes = gpu.Sizes(**{**gpu.DRY.__dict__, "caps": {**gpu.DRY.caps, "broken": 5, "endless": 0.3}})
    ctx = gpu.Context(sizes, torch.device("cpu"), torch.float32, tmp_path)
    report = gpu.run_sections(ctx, ["broken", "endless", "hybridgnet"])
    assert report["endless"]["seconds"] < 2  # stopped at its cap, not left to run
    assert report["broken"]["status"] == "error" and "planted" in report["broken"]["error"]
    assert report["broken"]["runs"] == [{"batch": 1}]  # what was measured before the failure is kept
    assert report["endless"]["status"] == "error" and "time cap" in report["endless"]["error"]
    assert report["hybridgnet"]["status"] == "ok" and report["hybridgnet"]["runs"][0]["images_per_s"] > 0
    markdown = gpu.render_markdown({"meta": {"date": "d", "dry_run": True, "device": "cpu", "dtype": "float32", "seconds": 1.0}, "sections": report})
    assert "| broken | error: RuntimeError: CUDA out of memory (planted) |" in markdown


def test_real_run_refuses_without_cuda(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert gpu.main(["--out", "unused"]) == 2
    assert "--dry-run" in capsys.readouterr().err
