"""generation_paper.json merged over generation.json: the paper's neural wiring (Appendix A.3) runs the bundled sample
end to end with tiny random HybridGNet, RadEdit, CXAS and YOLO models given by local path (no network)."""

import importlib.util
import json
import socket
from pathlib import Path

import pytest
from monai.bundle import run

from monai_ils import vocab
from tests.generation import tiny_neural

# found, not imported: importing ultralytics before prepare_offline_ultralytics has set its offline settings would
# make it reach for the network in every later test of the session
pytestmark = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("diffusers", "ultralytics")),
                                reason="needs diffusers and ultralytics (the neural extras)")

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "ils_generation" / "configs"


def test_paper_wiring_runs_every_neural_backend_on_the_sample(tmp_path, monkeypatch):
    weights = tiny_neural.write_radedit(tmp_path / "radedit")
    weights["cxas"] = tiny_neural.write_cxas(tmp_path / "UNet_ResNet50_default.pth")
    weights["hybridgnet"] = tiny_neural.write_hybridgnet(tmp_path / "bestMSE.pt")
    weights["yolo"], yolo_config = tiny_neural.write_yolo(tmp_path / "yolo")
    paper = json.loads((CONFIGS / "generation_paper.json").read_text())
    assert set(weights) == set(paper["weights"])  # every placeholder path is one the user edits

    log = tmp_path / "probe.jsonl"
    probe = tmp_path / "probe.json"  # records what the study chain produced, after its last step
    probe.write_text(json.dumps({"+study_transforms#transforms": [
        {"_target_": "tests.generation.chain_probe.RecordKeysd", "path": str(log), "tag": "study",
         "label_keys": ["anatomy_hybridgnet", "anatomy_cxas", "anatomy"], "record_keys": ["box_classes", "anatomy_qc"]},
    ]}))

    def no_network(*args, **kwargs):
        raise AssertionError("a backend tried to reach the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    out = tmp_path / "out"
    overrides = {f"weights#{name}": str(path) for name, path in weights.items()}
    overrides.update({  # the tiny models' sizes (real weights keep the defaults)
        "counterfactual_kwargs#num_inference_steps": 2, "counterfactual_kwargs#size": 32, "cross_check_kwargs#size": 64,
        "boxes_kwargs#imgsz": 64, "boxes_kwargs#conf": 0.25, "boxes_kwargs#config_dir": str(yolo_config), "max_size": 256,
    })
    run(config_file=[str(CONFIGS / "generation.json"), str(CONFIGS / "generation_paper.json"), str(probe)], output_dir=str(out),
        progress=False, overlays=False, **overrides)

    summary = json.loads((out / "summary.json").read_text())
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()] if (out / "errors.jsonl").is_file() else []
    assert summary["studies"] == 1 and summary["errors"] == 0, errors
    [study] = [json.loads(line) for line in log.read_text().splitlines()]
    labels = study["labels"]
    assert set(labels["anatomy_hybridgnet"]) >= {vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.HEART}  # HybridGNet ran
    assert not set(labels["anatomy_hybridgnet"]) & set(vocab.LUNG_BASES)  # no zones from it: they come from CXAS
    assert labels["anatomy_cxas"] == sorted(vocab.CXAS_LABEL_IDS)  # CXAS ran (on the RadEdit output)
    assert set(labels["anatomy"]) == set(vocab.CXAS_LABEL_IDS)  # merged: CXAS zones and lobes, HybridGNet lungs and heart
    assert {"counterfactual", "boxes", "anatomy_qc", "ctr"} <= set(study["keys"])  # RadEdit, YOLO, the D.2 cross-check, CTR
    assert "8" in study["values"]["box_classes"]  # the tiny YOLO's "nodule/mass" boxes
    if summary["ok"] == 0:  # random models: the two anatomy sources may well disagree, and then D.2 drops the study
        assert errors and errors[0]["status"] == "skipped" and "anatomy cross-check" in errors[0]["reason"]
