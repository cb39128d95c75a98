"""The generation bundle's grounding chain is config: a command-line override, an inserted transform and a reorder
each reach the written dataset (run through ``monai.bundle`` on the bundled sample study)."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import run
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "bundles" / "ils_generation" / "configs" / "generation.json"
QUICK = {"progress": False, "overlays": False}


def _index(chain: str, target: str) -> int:
    """Position of the step whose ``_target_`` ends with ``target`` in ``chain`` of generation.json."""
    steps = json.loads(CONFIG.read_text())[chain]["transforms"]
    [index] = [i for i, step in enumerate(steps) if step["_target_"].endswith("." + target)]
    return index


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out / "masks")): np.asarray(Image.open(p)) > 0 for p in sorted((out / "masks").rglob("*.png"))}


def _run(out: Path, *extra_configs: Path, **overrides) -> Path:
    run(config_file=[str(CONFIG), *map(str, extra_configs)], output_dir=str(out), **QUICK, **overrides)
    return out


def _with_chain(path: Path, chain: str, steps: list) -> Path:
    path.write_text(json.dumps({f"{chain}#transforms": steps}))
    return path


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = _run(tmp_path_factory.mktemp("chain") / "default")
    assert _masks(out), "the bundled sample grounds no lesion: the comparisons below would prove nothing"
    return out


def test_command_line_override_of_a_refine_parameter_changes_the_masks(default_run, tmp_path):
    refine = _index("finding_transforms", "RefineLesionMaskd")
    out = tmp_path / "no_expansion"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG), "--output_dir", str(out),
               "--progress", "False", "--overlays", "False", f"--finding_transforms#transforms#{refine}#expand_iterations", "0"]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    default, unexpanded = _masks(default_run), _masks(out)
    assert unexpanded, "without the expansion the sample should still ground its dense opacities"
    changed = [name for name in unexpanded if name not in default or not np.array_equal(unexpanded[name], default[name])]
    assert changed, "expand_iterations=0 wrote the same masks as the default 8 iterations"
    # the expansion only grows a mask, so without it the study's lesion area is smaller
    assert sum(m.sum() for m in unexpanded.values()) < sum(m.sum() for m in default.values())


def test_inserted_user_transforms_run_where_they_were_put(default_run, tmp_path):
    log = tmp_path / "probe.jsonl"
    config = json.loads(CONFIG.read_text())
    study = copy.deepcopy(config["study_transforms"]["transforms"])
    ctr = _index("study_transforms", "StudyCardiothoracicRatiod")
    study.insert(ctr, {"_target_": "tests.generation.chain_probe.RecordKeysd", "path": str(log), "tag": "study"})
    extra = _with_chain(tmp_path / "insert_study.json", "study_transforms", study)
    appended = tmp_path / "append_finding.json"  # MONAI's "+" key appends to the list of the first config
    appended.write_text(json.dumps({"+finding_transforms#transforms": [
        {"_target_": "tests.generation.chain_probe.RecordKeysd", "path": str(log), "tag": "finding",
         "record_keys": ["lesion_type", "grounded_locations"]},
    ]}))
    out = _run(tmp_path / "inserted", extra, appended)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    [study_line] = [line for line in lines if line["tag"] == "study"]
    assert "boxes" in study_line["keys"] and "ctr" not in study_line["keys"]  # after the boxes, before the CTR
    findings = [line for line in lines if line["tag"] == "finding"]
    # one call per grounded lung finding at least (each written mask comes from one), after VerifyLocationsd
    assert len(findings) >= len(_masks(default_run)) > 0
    assert all("lesion_mask" in line["keys"] and line["values"]["lesion_type"] == "opacity" for line in findings)
    assert _masks(out).keys() == _masks(default_run).keys()  # a recording transform changes nothing


def test_inserted_monai_transform_changes_the_output(default_run, tmp_path):
    extra = tmp_path / "blank.json"
    extra.write_text(json.dumps({"+finding_transforms#transforms": [
        {"_target_": "monai.transforms.Lambdad", "keys": "lesion_mask", "func": "$lambda mask: mask * 0"},
    ]}))
    out = _run(tmp_path / "blank", extra)
    assert _masks(out) == {}  # every lesion mask emptied: no positive pair, no mask PNG
    assert json.loads((out / "summary.json").read_text())["ok"] == 1


def test_a_reorder_is_accepted_where_order_is_free_and_refused_clearly_where_it_matters(default_run, tmp_path):
    config = json.loads(CONFIG.read_text())
    study = copy.deepcopy(config["study_transforms"]["transforms"])
    ctr = study.pop(_index("study_transforms", "StudyCardiothoracicRatiod"))
    study.insert(_index("study_transforms", "LobesFromZonesd") + 1, ctr)  # the CTR right after the anatomy
    out = _run(tmp_path / "ctr_first", _with_chain(tmp_path / "ctr_first.json", "study_transforms", study))
    same, default = _masks(out), _masks(default_run)
    assert same.keys() == default.keys() and all(np.array_equal(same[k], default[k]) for k in same)
    assert (out / "dataset.json").read_text() == (default_run / "dataset.json").read_text()

    finding = copy.deepcopy(config["finding_transforms"]["transforms"])
    components = finding.pop(_index("finding_transforms", "IntersectingComponentsd"))
    finding.insert(_index("finding_transforms", "FilterLesionBoxesd"), components)  # before the boxes it needs are kept
    out = _run(tmp_path / "components_first", _with_chain(tmp_path / "components_first.json", "finding_transforms", finding))
    [record] = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert record["status"] == "error" and record["error"]["stage"] == "grounding"
    assert "IntersectingComponentsd" in record["error"]["message"] and "kept_boxes" in record["error"]["message"]
