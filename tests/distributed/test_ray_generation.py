"""executor: ray gives the local runner's bytes, resumes either way, survives a dead actor."""

import os

import pytest
from tests.generation.gen_fixtures import toy_grounder, write_study_csv

from monai_ils.data.mimic_cxr import CSVStudyIndex
from monai_ils.generation.pairs import PairGenerator
from monai_ils.generation.processor import PairsProcessor
from monai_ils.generation.ray_executor import RayExecutor
from monai_ils.generation.runner import GenerationRunner


def tree_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_runner(out, processor=None, **kw):
    kw.setdefault("shard_size", 4)
    return GenerationRunner(out, processor or PairsProcessor(toy_grounder, PairGenerator(seed=5)), settings={"seed": 5},
                            progress=False, **kw)


def test_ray_writes_what_the_local_runner_writes(ray_cluster, tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 11)  # a failing study and two skipped ones
    make_runner(tmp_path / "local").run(CSVStudyIndex(csv_path))
    executor = RayExecutor(concurrency=2)
    summary = make_runner(tmp_path / "ray", executor=executor).run(CSVStudyIndex(csv_path))
    assert (summary.studies, summary.processed_now, summary.errors, summary.skipped) == (11, 11, 1, 2)
    assert executor.last_run["actors"] == 2 and executor.last_run["restarts"] == 0
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")
