"""Resume fingerprint from the resolved configuration (issue 12 item 5): what is described, what refuses a resume."""

import json
import re

import numpy as np
import pytest
import torch
from monai.transforms import Compose, ScaleIntensity

import monai_ils
from monai_ils.data.mimic_cxr import CSVStudyIndex
from monai_ils.generation.fingerprint import describe, diff, format_diff
from monai_ils.generation.lazy import LazyProcessor
from monai_ils.generation.pairs import PairGenerator
from monai_ils.generation.processor import PairsProcessor
from monai_ils.generation.qc import StudyQC
from monai_ils.generation.runner import GenerationRunner
from tests.generation.gen_fixtures import toy_grounder, write_study_csv

ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


class Node:
    def __init__(self, value, weights_path=None):
        self.value = value
        self.weights_path = weights_path
        self.api_key = "sk-do-not-record"
        self._cache = object()  # private state: not described
        self.parent = None


class ChainGrounder:
    """A grounder holding a MONAI Compose (as the pipeline does); its output does not depend on it here."""

    def __init__(self, chain):
        self.chain = chain

    def __call__(self, record):
        return toy_grounder(record)


def _factory(seed):
    raise AssertionError("describing a LazyProcessor must not build it")


def test_describe_is_deterministic_json_without_addresses_or_secrets():
    a = Node({"b": 2, "a": [1.5, float("nan")]}, weights_path="/weights/model.pt")
    a.parent = a  # a cycle
    a.array = np.arange(6, dtype=np.int16).reshape(2, 3)
    a.tensor = torch.zeros(2, dtype=torch.float32)
    a.module = torch.nn.Linear(3, 2)
    a.chain = Compose([ScaleIntensity(minv=0.0, maxv=1.0)])
    a.function = _factory
    out = describe(a)
    text = json.dumps(out, sort_keys=True)
    assert not ADDRESS.search(text) and "sk-do-not-record" not in text and "_cache" not in text
    assert out["_target_"] == "tests.generation.test_fingerprint.Node"
    assert out["value"] == {"a": [1.5, "nan"], "b": 2} and out["weights_path"] == "/weights/model.pt"
    assert out["api_key"] == "<redacted>" and out["parent"] == {"_cycle_": "tests.generation.test_fingerprint.Node"}
    assert out["array"]["_array_"] == "int16" and out["array"]["shape"] == [2, 3] and len(out["array"]["sha256"]) == 16
    assert out["tensor"]["_array_"] == "torch.float32" and out["tensor"]["shape"] == [2]
    assert out["module"] == {"_module_": "torch.nn.modules.linear.Linear", "parameters": 8}  # 3*2 weights + 2 biases
    assert out["chain"][0]["_target_"] == "monai.transforms.intensity.array.ScaleIntensity" and out["chain"][0]["maxv"] == 1.0
    assert out["function"] == {"_callable_": "tests.generation.test_fingerprint._factory"}
    b = Node({"a": [1.5, float("nan")], "b": 2}, weights_path="/weights/model.pt")  # same content, another object
    b.parent, b.array, b.tensor, b.module = b, a.array.copy(), a.tensor.clone(), torch.nn.Linear(3, 2)
    b.chain, b.function = Compose([ScaleIntensity(minv=0.0, maxv=1.0)]), _factory
    assert describe(b) == out
    b.array[0, 0] = 7
    assert [path for path, _, _ in diff(out, describe(b))] == ["array.sha256"]


def test_lazy_processor_is_described_by_its_recipe_without_building():
    lazy = LazyProcessor(_factory, 3, qc=StudyQC(require_view=False))
    out = describe(lazy)
    assert not lazy.built
    assert out["factory"] == {"_callable_": "tests.generation.test_fingerprint._factory"} and out["args"] == [3]
    assert out["kwargs"]["qc"]["require_view"] is False


def test_diff_lists_changed_paths_old_to_new():
    old = {"processor": {"generator": {"seed": 0, "max_ctr": 0.45}, "chain": [{"noise_radius": 2}, {"k": 1}]}}
    new = {"processor": {"generator": {"seed": 0, "max_ctr": 0.5}, "chain": [{"noise_radius": 3}, {"k": 1}], "added": True}}
    changes = diff(old, new)
    assert [(p, a, b) for p, a, b in changes if p != "processor.added"] == [
        ("processor.chain[0].noise_radius", 2, 3), ("processor.generator.max_ctr", 0.45, 0.5)]
    text = format_diff(changes)
    assert "processor.chain[0].noise_radius: 2 -> 3" in text and "processor.added: <absent> -> true" in text


def _processor(probability=0.5, maxv=1.0):
    chain = Compose([ScaleIntensity(minv=0.0, maxv=maxv)])
    return PairsProcessor(ChainGrounder(chain), PairGenerator(seed=5, global_negative_probability=probability),
                          StudyQC(require_view=False))


def _runner(out, processor, **kw):
    return GenerationRunner(out, processor, shard_size=3, progress=False, **kw)


def test_resume_continues_with_the_same_config_and_refuses_a_changed_parameter_naming_it(tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 8)
    out = tmp_path / "out"
    first = _runner(out, _processor(), limit=4).run(CSVStudyIndex(csv_path))
    assert first.processed_now == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["monai_ils_version"] == monai_ils.__version__
    assert manifest["configuration"]["processor"]["generator"]["global_negative_probability"] == 0.5
    assert not ADDRESS.search(json.dumps(manifest))

    resumed = _runner(out, _processor()).run(CSVStudyIndex(csv_path))  # rebuilt objects, same configuration
    assert (resumed.processed_now, resumed.studies) == (4, 8)

    with pytest.raises(RuntimeError, match="other settings") as threshold:
        _runner(out, _processor(probability=0.25)).run(CSVStudyIndex(csv_path))
    assert "processor.generator.global_negative_probability: 0.5 -> 0.25" in str(threshold.value)
    with pytest.raises(RuntimeError) as transform:
        _runner(out, _processor(maxv=2.0)).run(CSVStudyIndex(csv_path))
    message = str(transform.value)
    assert "processor.grounder.chain[0].maxv: 1.0 -> 2.0" in message
    assert "changed (1)" in message and len(message) < 600  # the changed path, not two whole configurations


def test_version_change_refuses(tmp_path, monkeypatch):
    csv_path = write_study_csv(tmp_path / "in", 2)
    out = tmp_path / "out"
    _runner(out, _processor()).run(CSVStudyIndex(csv_path))
    monkeypatch.setattr(monai_ils, "__version__", "99.0.0")
    with pytest.raises(RuntimeError, match=r'monai_ils_version: "[^"]+" -> "99.0.0"'):
        _runner(out, _processor()).run(CSVStudyIndex(csv_path))


def test_real_pipeline_with_object_valued_backends_resumes(tmp_path):
    """Backend *objects* (not names) in the pipeline: the old ``default=str`` fingerprint printed their memory
    address, so every resume was refused; the description is by content."""
    from monai_ils.cues.classical_anatomy import ClassicalAnatomy
    from monai_ils.cues.classical_boxes import ClassicalBoxes
    from monai_ils.data.sample_studies import sample_study_records
    from monai_ils.generation.pipeline import GroundingPipeline, default_study_transforms

    def build(work_size=256):
        chain = default_study_transforms(anatomy=ClassicalAnatomy(work_size=work_size), boxes=ClassicalBoxes())
        pipeline = GroundingPipeline(study_transforms=chain, keep_image=False)
        return PairsProcessor(pipeline, PairGenerator(seed=0), StudyQC(require_view=False), overlays=False)

    out = tmp_path / "out"
    _runner(out, build(), limit=0).run(sample_study_records(), merge=False)
    text = (out / "manifest.json").read_text()
    assert not ADDRESS.search(text) and "ClassicalAnatomy" in text
    assert _runner(out, build(), limit=0).run(sample_study_records(), merge=False).studies == 0  # accepted
    with pytest.raises(RuntimeError, match=r"work_size: 256 -> 128"):
        _runner(out, build(work_size=128), limit=0).run(sample_study_records(), merge=False)
