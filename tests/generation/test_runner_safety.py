"""Issue 15.3 and 15.8: one run per output folder (an OS lock naming its holder); workers die with the runner."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from tests.generation.gen_fixtures import toy_grounder, write_study_csv

from monai_ils.data.mimic_cxr import CSVStudyIndex
from monai_ils.generation.lock import OutputLockedError
from monai_ils.generation.pairs import PairGenerator
from monai_ils.generation.processor import PairsProcessor
from monai_ils.generation.runner import GenerationRunner

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _runner(out, **kw):
    return GenerationRunner(out, PairsProcessor(toy_grounder, PairGenerator(seed=5)), shard_size=4, progress=False, **kw)


def _wait_for(condition, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_second_run_into_a_locked_folder_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from monai_ils.generation.lock import FolderLock; "
         "lock = FolderLock(sys.argv[1]); lock.acquire(); print('locked', flush=True); time.sleep(120)", str(out)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        records = CSVStudyIndex(write_study_csv(tmp_path / "in", 3))
        with pytest.raises(OutputLockedError, match=rf"in use by another generation run \(process {holder.pid}\)"):
            _runner(out).run(records)
        assert not (out / "shards").exists()  # refused before touching anything
        holder.send_signal(signal.SIGKILL)  # the kernel releases a dead holder's lock
        holder.wait(timeout=30)
        assert _runner(out).run(records).processed_now == 3
        assert (out / ".lock").read_text() == ""  # released cleanly: no PID left behind
    finally:
        holder.kill()
        holder.wait(timeout=30)


SCRIPT = """
import sys
from tests.generation.gen_fixtures import SlowProcessor, write_study_csv
from monai_ils.data.mimic_cxr import CSVStudyIndex
from monai_ils.generation.runner import GenerationRunner
from pathlib import Path
folder = Path(sys.argv[1])
records = CSVStudyIndex(write_study_csv(folder / "in", 4))
GenerationRunner(folder / "out", SlowProcessor(), progress=False, num_workers=2).run(records)
"""


def test_workers_exit_when_the_runner_is_killed(tmp_path):
    runner = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=ENV)
    try:
        parent = psutil.Process(runner.pid)

        def workers():
            return [p for p in parent.children(recursive=True) if "resource_tracker" not in " ".join(p.cmdline())]

        assert _wait_for(lambda: len(workers()) >= 2, 120), "the worker processes did not start"
        time.sleep(2.0)  # let the workers pass their initialiser
        started = workers()
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
        assert _wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in started), 30), \
            f"workers outlived the runner: {[p.pid for p in started if p.is_running()]}"
    finally:
        runner.kill()
        for p in psutil.Process().children(recursive=True):
            p.kill()
