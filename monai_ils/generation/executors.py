"""Ordered executors: run a per-study task over a stream of study items and yield the results in input order.

The runner hands an executor a task (a :class:`~monai_ils.generation.writer.StudyWriter`: ``record -> shard
line``) and an iterable of :class:`StudyItem`. The executor yields ``(item, line)`` for every item, in the
order of the input; items with ``todo=False`` were written by an interrupted run and come back with line
``None`` without being run (the runner still checks their keys). An executor keeps at most a bounded number
of studies in flight, so memory stays bounded and a changed input is reported where it differs.

Any object with this ``map`` method can be passed to ``GenerationRunner(executor=...)`` (a cluster executor,
for instance); it must stop its workers when the generator it returned is closed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple, Protocol, runtime_checkable

from monai_ils.data.mimic_cxr import StudyRecord

Task = Callable[[StudyRecord], dict]


class StudyItem(NamedTuple):
    """One study of the input: its position in the input, the record, and whether it still has to run."""

    position: int
    record: StudyRecord
    todo: bool = True


@runtime_checkable
class OrderedExecutor(Protocol):
    def map(self, task: Task, items: Iterable[StudyItem]) -> Iterator[tuple[StudyItem, dict | None]]:
        """``(item, task(item.record))`` in input order; ``(item, None)`` for items with ``todo=False``."""


class SerialExecutor:
    """Run each study in this process, one after the other."""

    def map(self, task: Task, items: Iterable[StudyItem]) -> Iterator[tuple[StudyItem, dict | None]]:
        for item in items:
            yield item, (task(item.record) if item.todo else None)


class ProcessPoolStudyExecutor:
    """Spread studies over ``num_workers`` spawned processes (one thread each), results in input order.

    The task is pickled once into each worker. At most ``2 * num_workers`` studies are in flight. A worker
    that dies (killed for memory) stops the run with a message naming a study in flight; what is written is
    kept, so running the same command again resumes.
    """

    def __init__(self, num_workers: int):
        if int(num_workers) < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers!r}.")
        self.num_workers = int(num_workers)

    def map(self, task: Task, items: Iterable[StudyItem]) -> Iterator[tuple[StudyItem, dict | None]]:
        try:
            pickle.dumps(task)
        except Exception as err:
            raise TypeError(
                f"num_workers={self.num_workers} sends the processor to worker processes, but it cannot be pickled "
                f"({type(err).__name__}: {err}). Use num_workers=0, or backends that can be copied (an in-process vLLM "
                f"cannot; the HTTP client of a vLLM server can)."
            ) from err
        return self._map(task, items)

    def _map(self, task: Task, items: Iterable[StudyItem]) -> Iterator[tuple[StudyItem, dict | None]]:
        pool = ProcessPoolExecutor(self.num_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(task, os.getpid()))
        in_flight: deque = deque()  # (item, future or None), oldest first
        awaited = None  # the entry whose line is being waited for
        item = None

        def oldest():
            nonlocal awaited
            awaited = in_flight.popleft()
            done, job = awaited
            line = None if job is None else job.result()
            awaited = None
            return done, line

        try:
            for item in items:
                job = pool.submit(_run_in_worker, item.record) if item.todo else None
                in_flight.append((item, job))
                while in_flight and (len(in_flight) > 2 * self.num_workers or in_flight[0][1] is None):
                    yield oldest()
            while in_flight:
                yield oldest()
        except BrokenProcessPool as err:  # from submit() or result(), whichever notices first
            first_unwritten = awaited or (in_flight[0] if in_flight else (item, None))
            raise RuntimeError(
                f"a worker process died (out of memory?) with study {first_unwritten[0].record.key!r} in flight. What is "
                f"written is kept: run the same command again to resume."
            ) from err
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def executor_for(num_workers: int) -> OrderedExecutor:
    """The executor ``num_workers`` asks for: this process for 0 or 1, a process pool above."""
    if int(num_workers) < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers!r}.")
    return SerialExecutor() if int(num_workers) <= 1 else ProcessPoolStudyExecutor(num_workers)


# ------------------------------------------------------------------------------------------------
_WORKER_TASK: Task | None = None


def _start_worker(task: Task, parent: int | None = None) -> None:
    """Worker initialiser: exit with the parent, keep this process's copy of the task, one thread (the
    processes share the cores)."""
    global _WORKER_TASK
    exit_with_parent(parent)
    _WORKER_TASK = task
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def exit_with_parent(parent: int | None) -> None:
    """Make this worker die when the process that started it dies (SIGKILL included), so no worker holding a
    study's images lives on after the run. Linux: the kernel sends SIGTERM (prctl PR_SET_PDEATHSIG); elsewhere
    a daemon thread polls the parent's PID once a second."""
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch():
        import time

        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_in_worker(record: StudyRecord) -> dict:
    return _WORKER_TASK(record)
