"""The app's rosalia task is built from bundles/rosalia/configs/inference.json: a change there is what the server runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.label.conftest import APP_DIR, INSTRUCTION, ROOT, app_conf, make_client
from tests.label.test_app import infer, png

BUNDLE = ROOT / "bundles" / "rosalia" / "configs" / "inference.json"


def _bundle_copy(tmp_path, **changes):
    config = json.loads(BUNDLE.read_text())
    config.update(changes)
    path = tmp_path / "inference.json"
    path.write_text(json.dumps(config))
    return path


def test_default_task_reads_the_repository_bundle():
    import sys

    sys.path.append(str(APP_DIR))
    from lib.infers.rosalia import BUNDLE_CONFIG

    assert BUNDLE_CONFIG == BUNDLE


def test_bundle_threshold_change_reaches_the_server(label_data, expected_prediction, tmp_path):
    # the repository bundle: the tiny model's mask has both classes
    client = make_client(label_data["studies"], app_conf(label_data["rosalia"]))
    base = png(infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION}))
    np.testing.assert_array_equal(base, expected_prediction.mask.astype(np.uint8))
    assert 0 < base.mean() < 1

    # the same server with a bundle whose mask threshold no logit passes: the served mask is blank and says why
    conf = {**app_conf(label_data["rosalia"]), "rosalia_bundle_config": str(_bundle_copy(tmp_path, mask_threshold=1e9))}
    client = make_client(label_data["studies"], conf)
    response = infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION})
    assert response.status_code == 200, response.text
    assert not png(response).any()
    result = infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION}, output="json").json()
    assert result["empty_reason"] == "no_foreground" and result["foreground_pixels"] == 0


def test_bundle_mode_is_the_default_and_app_conf_overrides_it(label_data, tmp_path):
    conf = {**app_conf(label_data["rosalia"]), "rosalia_bundle_config": str(_bundle_copy(tmp_path, mode="segment"))}
    result = infer(make_client(label_data["studies"], conf), "rosalia", "small_m1", {"instruction": INSTRUCTION}, output="json").json()
    assert result["mode"] == "segment" and result["answer"] is None

    conf["rosalia_mode"] = "generate"  # an app conf key overrides the bundle value
    result = infer(make_client(label_data["studies"], conf), "rosalia", "small_m1", {"instruction": INSTRUCTION}, output="json").json()
    assert result["mode"] == "generate" and isinstance(result["answer"], str)


def test_broken_bundle_makes_the_task_unavailable_with_the_cause(label_data, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"checkpoint_dir": "x"}))
    client = make_client(label_data["studies"], {**app_conf(label_data["rosalia"]), "rosalia_bundle_config": str(broken)})
    info = client.get("/info/").json()
    assert "rosalia" in info["unavailable"] and "network_def" in json.dumps(info["unavailable"])
    response = infer(client, "rosalia", "small_m1", {"instruction": INSTRUCTION})
    assert response.status_code == 503 and "network_def" in response.text
