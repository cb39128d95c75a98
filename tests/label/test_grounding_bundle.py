"""The app's grounding task is built from the generation bundle (bundles/ils_generation/configs/generation.json):
a change made in a bundle config, or a ``grounding#<id>`` app conf override of a bundle node, is what the server runs."""

from __future__ import annotations

import json

from tests.label.conftest import APP_DIR, GENERATION_JSON, app_conf, make_client
from tests.label.label_data import SYNTH_REPORT, expected_lesion_mask
from tests.label.test_app import infer


def _consolidation(client) -> dict:
    result = infer(client, "grounding", "synth", {"report": SYNTH_REPORT, "pairs": False}, output="json").json()
    return next(f for f in result["findings"] if f["lesion"] == "consolidation")


def _refine_index() -> int:
    steps = json.loads(GENERATION_JSON.read_text())["finding_transforms"]["transforms"]
    [index] = [i for i, step in enumerate(steps) if step["_target_"].endswith(".RefineLesionMaskd")]
    return index


def test_default_task_reads_the_repository_generation_bundle():
    import sys

    sys.path.append(str(APP_DIR))
    from lib.infers.grounding import BUNDLE_CONFIG

    assert BUNDLE_CONFIG == GENERATION_JSON


def test_a_threshold_changed_in_a_copied_generation_json_is_what_the_server_runs(label_data, tmp_path):
    conf = app_conf(None, label_data["grounding_bundle"])
    base = _consolidation(make_client(label_data["studies"], conf))
    assert base["grounded_location"] == ["right lung base"] and base["pixels"] == int(expected_lesion_mask().sum())

    config = json.loads(GENERATION_JSON.read_text())
    config["thresholds"]["general"]["conf"] = 0.95  # the synthetic study's only box has confidence 0.9: now filtered out
    copy = tmp_path / "generation.json"
    copy.write_text(json.dumps(config))
    conf["grounding_bundle_config"] = f"{copy},{label_data['grounding_bundle']}"
    changed = _consolidation(make_client(label_data["studies"], conf))
    assert changed["presence"] == "positive" and changed["grounded_location"] == [] and changed["label"] is None
    assert changed["pixels"] == 0


def test_app_conf_overrides_a_bundle_node(label_data):
    conf = app_conf(None, label_data["grounding_bundle"])
    # every component smaller than the image is dropped by the refinement: nothing left to ground
    conf[f"grounding#finding_transforms#transforms#{_refine_index()}#min_component_size"] = str(10**9)
    finding = _consolidation(make_client(label_data["studies"], conf))
    assert finding["grounded_location"] == [] and finding["label"] is None and finding["pixels"] == 0

    conf = app_conf(None, label_data["grounding_bundle"])
    conf["grounding#thresholds"] = '{"general": {"conf": 0.95}, "edema": {}}'  # JSON-parsed: the 0.9 box is filtered out
    assert _consolidation(make_client(label_data["studies"], conf))["pixels"] == 0
    conf["grounding#thresholds"] = '{"general": {"conf": 0.85}, "edema": {}}'  # and kept again
    assert _consolidation(make_client(label_data["studies"], conf))["pixels"] == int(expected_lesion_mask().sum())
