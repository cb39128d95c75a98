"""executor: ray gives the local runner's bytes, resumes either way, survives a dead actor."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.generation.gen_fixtures import toy_grounder, write_study_csv

from monai_ils.data.mimic_cxr import CSVStudyIndex
from monai_ils.generation.pairs import PairGenerator
from monai_ils.generation.processor import PairsProcessor
from monai_ils.generation.ray_executor import RayExecutor
from monai_ils.generation.runner import GenerationRunner

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("ray_driver.py")
LOCAL_WORKER = ROOT / "tests" / "generation" / "resume_worker.py"


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


# ------------------------------------------------------------------------------------------------
# faults
# ------------------------------------------------------------------------------------------------
class DiesOnce:
    """Exits its worker process abruptly on study ``key`` (the first ``times`` times), as an OOM kill would."""

    def __init__(self, key, marker_dir, times=1):
        self.key, self.marker_dir, self.times = key, str(marker_dir), times
        self.processor = PairsProcessor(toy_grounder, PairGenerator(seed=5))

    def __call__(self, record):
        if record.key == self.key:
            deaths = len(os.listdir(self.marker_dir))
            if deaths < self.times:
                open(os.path.join(self.marker_dir, f"death{deaths}"), "w").close()
                os._exit(3)
        return self.processor(record)


def test_dead_actor_is_replaced_and_its_study_retried(ray_cluster, tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 9)
    make_runner(tmp_path / "local").run(CSVStudyIndex(csv_path))
    (tmp_path / "deaths").mkdir()
    executor = RayExecutor(concurrency=2, max_retries=2)
    summary = make_runner(tmp_path / "ray", DiesOnce("st0003", tmp_path / "deaths", times=2), executor=executor).run(CSVStudyIndex(csv_path))
    assert len(os.listdir(tmp_path / "deaths")) == 2  # died twice, the third try went through
    assert executor.last_run["restarts"] == 2 and executor.last_run["worker_errors"] == 0
    assert summary.processed_now == 9
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")


def test_study_that_always_kills_its_actor_becomes_an_error_record(ray_cluster, tmp_path):
    csv_path = write_study_csv(tmp_path / "in", 6)
    (tmp_path / "deaths").mkdir()
    executor = RayExecutor(concurrency=2, max_retries=1)
    runner = make_runner(tmp_path / "ray", DiesOnce("st0002", tmp_path / "deaths", times=99), executor=executor)
    summary = runner.run(CSVStudyIndex(csv_path))
    # first try and one retry; plus at most one death not blamed on it, when a study queued with it on the same actor
    # failed too (both then rerun alone)
    assert 2 <= len(os.listdir(tmp_path / "deaths")) <= 3
    assert (summary.studies, summary.errors) == (6, 2)  # st0004 is the toy input's own failure
    errors = {e["key"]: e for e in map(json.loads, (tmp_path / "ray" / "errors.jsonl").read_text().splitlines())}
    dead = errors["st0002"]["error"]
    assert dead["stage"] == "worker" and "died 2 time(s)" in dead["message"]
    assert errors["st0004"]["error"]["stage"] == "grounding"
    assert executor.last_run["retried"] == 1  # studies queued behind st0002 on its actor went back without an attempt counted


def _driver(csv_path, out, address, *signal_at):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(DRIVER), str(csv_path), str(out), address, *signal_at], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The local one-process output; the tests write theirs beside it (``_beside``), because a dataset's
    image paths are relative to its folder: two outputs compare byte for byte only at the same depth."""
    folder = tmp_path_factory.mktemp("reference")
    csv_path = write_study_csv(folder / "in", 13)
    make_runner(folder / "local").run(CSVStudyIndex(csv_path))
    return csv_path, folder / "local"


def _beside(local, tmp_path, name="out"):
    return local.parent / f"{tmp_path.name}_{name}"


def test_killed_ray_driver_resumes_with_ray_and_with_local(ray_cluster, reference, tmp_path):
    csv_path, local = reference
    for resume_with in ("ray", "local"):
        out = _beside(local, tmp_path, resume_with)
        # killed when st0010 starts: with at most two studies queued per actor, st0000-st0003 are written by then
        killed = _driver(csv_path, out, ray_cluster, "KILL", "st0010")
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert not (out / "dataset.json").exists()
        if resume_with == "ray":
            resumed = _driver(csv_path, out, ray_cluster)
            assert resumed.returncode == 0, resumed.stderr[-2000:]
            now = int(resumed.stdout.split()[-1])
        else:
            now = make_runner(out).run(CSVStudyIndex(csv_path)).processed_now
        assert 1 <= now <= 13 - 4  # at least the first shard was written before st0010 was reached
        assert tree_bytes(out) == tree_bytes(local)


def test_local_run_killed_resumes_with_ray(ray_cluster, reference, tmp_path):
    csv_path, local = reference
    out = _beside(local, tmp_path)
    killed = subprocess.run([sys.executable, str(LOCAL_WORKER), str(csv_path), str(out), "4", "5"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=240)
    assert killed.returncode == -9, killed.stderr[-2000:]
    summary = make_runner(out, executor=RayExecutor(concurrency=2)).run(CSVStudyIndex(csv_path))
    assert summary.processed_now == 8
    assert tree_bytes(out) == tree_bytes(local)


def test_ctrl_c_stops_the_cluster_work_and_the_run_resumes(ray_cluster, reference, tmp_path):
    import ray

    csv_path, local = reference
    out = _beside(local, tmp_path)
    interrupted = _driver(csv_path, out, ray_cluster, "INT", "st0005")
    assert interrupted.returncode != 0 and "KeyboardInterrupt" in interrupted.stderr, interrupted.stderr[-2000:]
    deadline = time.monotonic() + 60  # the actors are gone: their CPUs are free again
    while time.monotonic() < deadline and ray.available_resources().get("CPU", 0) < 2:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2
    resumed = _driver(csv_path, out, ray_cluster)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert tree_bytes(out) == tree_bytes(local)



# ------------------------------------------------------------------------------------------------
# the bundle
# ------------------------------------------------------------------------------------------------
def test_bundle_executor_ray_and_precomputed_findings_write_what_local_writes(ray_cluster, tmp_path):
    from monai_ils.data.sample_studies import sample_study_csv
    from monai_ils.report.cli import main as report_cli

    csv_path = sample_study_csv(tmp_path / "in", 4)
    config = ROOT / "bundles" / "ils_generation" / "configs" / "generation.json"
    thresholds = json.loads(config.read_text())["sample_thresholds"]

    def bundle(out, *extra):
        command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config), "--output_dir", str(out),
                   "--input", str(csv_path), "--thresholds", json.dumps(thresholds), "--max_size", "256", "--progress", "False", *extra]
        done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return tree_bytes(out)

    local = bundle(tmp_path / "local")
    assert json.loads(local["summary.json"])["pairs"] > 0
    assert bundle(tmp_path / "ray", "--executor", "ray", "--ray_address", ray_cluster, "--ray_concurrency", "2") == local
    findings = tmp_path / "findings.jsonl"
    assert report_cli(["structure", str(csv_path), str(findings), "--id-column", "study_id", "--quiet"]) == 0
    precomputed = bundle(tmp_path / "precomputed", "--structured_findings", str(findings))
    assert {k: v for k, v in precomputed.items() if k != "manifest.json"} == {k: v for k, v in local.items() if k != "manifest.json"}


# ------------------------------------------------------------------------------------------------
# lazy processor, settings
# ------------------------------------------------------------------------------------------------
def _toy_processor(seed):
    return PairsProcessor(toy_grounder, PairGenerator(seed=seed))


def test_lazy_processor_is_built_in_the_workers_only(ray_cluster, tmp_path):
    import pickle

    from monai_ils.generation.lazy import LazyProcessor

    csv_path = write_study_csv(tmp_path / "in", 5)
    make_runner(tmp_path / "local").run(CSVStudyIndex(csv_path))
    lazy = LazyProcessor(_toy_processor, 5)
    make_runner(tmp_path / "ray", lazy, executor=RayExecutor(concurrency=2)).run(CSVStudyIndex(csv_path))
    assert not lazy.built  # the driver never built it
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")
    lazy(next(iter(CSVStudyIndex(csv_path))))
    assert lazy.built and not pickle.loads(pickle.dumps(lazy)).built  # a copy travels as the recipe
    with pytest.raises(TypeError, match="factory must be callable"):
        LazyProcessor("not callable")


@pytest.mark.parametrize("kwargs, message", [
    ({"address": "nowhere"}, "ray_address must be null, 'auto'"),
    ({"num_cpus_per_worker": 0}, "ray_num_cpus_per_worker must be > 0"),
    ({"num_gpus_per_worker": -1}, "ray_num_gpus_per_worker must be >= 0"),
    ({"concurrency": 0}, "ray_concurrency must be >= 1"),
    ({"max_retries": -1}, "ray_max_retries must be >= 0"),
])
def test_bad_ray_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RayExecutor(**kwargs)


def test_ray_executor_is_an_ordered_executor():
    from monai_ils.generation.executors import OrderedExecutor

    assert isinstance(RayExecutor(), OrderedExecutor)


def test_a_worker_that_cannot_start_stops_the_run(ray_cluster, tmp_path):
    from monai_ils.generation.lazy import LazyProcessor

    csv_path = write_study_csv(tmp_path / "in", 3)

    class Unpicklable:  # fails when the actor unpickles the runner
        def __reduce__(self):
            return (_raise, ("weights file missing: /models/radedit",))

    runner = make_runner(tmp_path / "out", LazyProcessor(_toy_processor, Unpicklable()), executor=RayExecutor(concurrency=1))
    with pytest.raises(RuntimeError, match="a Ray worker could not start .*weights file missing"):
        runner.run(CSVStudyIndex(csv_path))


def _raise(message):
    raise FileNotFoundError(message)


class _Squarer:
    """Squares numbers; ``fatal`` exits the actor's process every time."""

    def __init__(self, fatal):
        self.fatal = fatal

    def run(self, x):
        if x == self.fatal:
            os._exit(3)
        return x * x


def test_ordered_actor_map_queues_two_per_actor_and_blames_only_the_killer(ray_cluster):
    import ray

    from monai_ils.distributed import ordered_actor_map

    worker = ray.remote(_Squarer).options(num_cpus=0.1, max_restarts=0, max_task_retries=0, max_concurrency=1)
    actors = [worker.remote(3) for _ in range(2)]
    blamed, submitted = [], []

    def on_death(item, err):
        blamed.append(item)
        return -1  # the item's result: recorded as failed

    def submit(actor, x):
        submitted.append(x)
        return actor.run.remote(x)

    out = list(ordered_actor_map(ray, actors, lambda slot: worker.remote(3), range(10), submit, on_death,
                                 needs_work=lambda x: x != 7, depth=2))
    assert out == [(x, None if x == 7 else -1 if x == 3 else x * x) for x in range(10)]
    # 3 kills every actor it reaches; a study queued behind it or finished just before (reply lost in the crash)
    # fails with it, is not blamed, and reruns alone until the death is attributed.
    assert blamed == [3]
    assert submitted[:4] == [0, 1, 2, 3]  # both actors got two studies at once
    for actor in actors:
        ray.kill(actor)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        next(ordered_actor_map(ray, actors, None, range(2), submit, on_death, depth=0))


def test_ray_connection_reuses_a_running_session_and_reports_the_split(ray_cluster, tmp_path):
    import ray

    from monai_ils.distributed import RayConnection

    connection = RayConnection().start()  # in the background
    assert connection.wait() is ray and ray.is_initialized()
    connection.close()
    assert ray.is_initialized()  # the test's session was not opened here: left running
    csv_path = write_study_csv(tmp_path / "in", 5)
    executor = RayExecutor(concurrency=2, connect_early=True)
    make_runner(tmp_path / "ray", executor=executor).run(CSVStudyIndex(csv_path))
    timing = executor.last_run["timing"]
    assert 0 <= timing["connected_s"] <= timing["first_result_s"] <= timing["results_done_s"] <= timing["total_s"]
    assert 0 < timing["busy_share"] <= 1.0 + 1e-6
    workers = executor.last_run["workers"]
    assert len(workers) == 2 and sum(w["studies"] for w in workers) == 5 and all(w["peak_rss_mib"] > 0 for w in workers)
