"""``executor: ray``: the generation runner's studies processed by Ray actors, lines written by the driver in input order.

Why Ray core actors rather than Ray Data ``map_batches``: the runner's guarantees are per study and ordered —
a line per study in input order, a bounded number of studies in flight, a dead worker's study retried a bounded
number of times and then recorded as an error, the partial shard resumed by either executor. Actors give that
directly: each actor builds the processor once (models loaded once per actor, on its GPU), runs one study at a
time with the next one queued on it (``depth``), writes that study's masks/overlays into the output folder itself
and returns its shard line (small JSON); the driver keeps a window of ``2 x concurrency`` studies, hands each to
the least busy actor, and writes the lines in order exactly as the local runner does, so both executors produce
the same bytes. A Ray Data pipeline would
reorder, batch and retry behind our back (and retry a poisoned study forever or fail the whole dataset).

Fault handling: an actor that dies (out of memory, a segfault in a native library, a lost node) is replaced by a
new one, and its study is tried again up to ``max_retries`` times; after that the study gets an error record
(stage ``worker``) and the run goes on (a death with several of the actor's studies failed is charged to none:
they rerun alone, see :func:`~monai_ils.distributed.ordered_actor_map`). An actor that cannot even start (bad weights path) stops the run with
that error. Ctrl-C, or any error in the driver, kills the actors; what is written is kept and the same command
(with either executor) resumes.

Storage: workers write into ``output_dir`` themselves, so on a multi-node cluster it must be a folder every
node sees at the same path (NFS, Lustre, a mounted bucket). The driver writes a probe file there and checks it
from every node before any work starts; a folder some node does not see stops the run with a message naming it.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from monai_ils.distributed import RETRY, RayConnection, alive_nodes, check_address, ordered_actor_map

logger = logging.getLogger(__name__)

__all__ = ["RayExecutor"]


class _StudyWorker:
    """The actor: one copy of the study task (writer + processor, built here on first use), one study at a time."""

    def __init__(self, task, cwd: str, path: list[str], threads: int = 1):
        import time

        self.started_at = time.time()
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative image/report paths of the input mean the same as on the driver
        for entry in reversed(path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        import cv2
        import torch

        torch.set_num_threads(threads)  # the CPUs Ray reserved for this actor, as the local pool's workers
        cv2.setNumThreads(threads)
        from ray import cloudpickle  # unpickled only now, so the modules it names import from the driver's paths

        self.task = cloudpickle.loads(task)
        self.ready_at = time.time()
        self.busy_s, self.studies, self.first_study_s = 0.0, 0, None

    def ready(self) -> int:
        return os.getpid()

    def process(self, record) -> dict:
        import time

        start = time.perf_counter()
        try:
            return self.task(record)
        finally:
            took = time.perf_counter() - start
            self.busy_s += took
            self.studies += 1
            if self.first_study_s is None:
                self.first_study_s = took  # includes building the processor on first use

    def stats(self) -> dict:
        """Wall-clock marks (epoch seconds) and counters of this actor, and its peak resident memory."""
        import resource

        return {"pid": os.getpid(), "started_at": self.started_at, "ready_at": self.ready_at, "studies": self.studies,
                "busy_s": self.busy_s, "first_study_s": self.first_study_s,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    def peak_rss_mib(self) -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _probe_exists(path: str) -> bool:
    return os.path.exists(path)


class RayExecutor:
    """Run the runner's per-study work on Ray actors (see the module docstring).

    Args:
        address: None for a private local Ray (started and stopped by the run), ``"auto"`` for the cluster of
            this node, ``"ray://host:10001"`` for a remote one.
        num_cpus_per_worker / num_gpus_per_worker: Ray resources each actor reserves (a GPU cue backend wants
            ``num_gpus_per_worker: 1``, or 0.5 to put two actors on one GPU).
        concurrency: number of actors; None: as many as the cluster's CPUs (or GPUs, when each actor wants one) allow.
        max_retries: how many times a study whose actor died is tried again before it is recorded as an error.
        local_num_cpus: CPUs of the private local Ray (None: all of this machine).
        connect_early: start connecting to Ray (``ray.init``, seconds for a local Ray) in the background now,
            while the driver indexes its input, instead of when the run starts (:meth:`start` does it later).
        depth: studies queued per actor (2: the next one waits on the actor while it works, so it never idles
            on the driver's round trip).

    After a run, ``last_run`` holds its counters and the time split (``timing``: seconds from the start of the
    run to connected, to every actor ready, to the first result, to the end; the actors' busy share) and the
    actors' peak memory (``worker_peak_rss_mib``).
    """

    name = "ray"

    def __init__(self, address=None, num_cpus_per_worker: float = 1, num_gpus_per_worker: float = 0,
                 concurrency: int | None = None, max_retries: int = 2, local_num_cpus: int | None = None,
                 connect_early: bool = False, depth: int = 2):
        self.address = check_address(address)
        if not float(num_cpus_per_worker) > 0:
            raise ValueError(f"ray_num_cpus_per_worker must be > 0, got {num_cpus_per_worker!r}.")
        if float(num_gpus_per_worker) < 0:
            raise ValueError(f"ray_num_gpus_per_worker must be >= 0, got {num_gpus_per_worker!r}.")
        if concurrency is not None and int(concurrency) < 1:
            raise ValueError(f"ray_concurrency must be >= 1 or null, got {concurrency!r}.")
        if int(max_retries) < 0:
            raise ValueError(f"ray_max_retries must be >= 0, got {max_retries!r}.")
        self.num_cpus_per_worker = float(num_cpus_per_worker)
        self.num_gpus_per_worker = float(num_gpus_per_worker)
        self.concurrency = None if concurrency is None else int(concurrency)
        self.max_retries = int(max_retries)
        if int(depth) < 1:
            raise ValueError(f"depth (studies queued per Ray actor) must be >= 1, got {depth!r}.")
        self.depth = int(depth)
        self.local_num_cpus = local_num_cpus
        self.last_run: dict = {}
        self._connection = RayConnection(self.address, local_num_cpus)
        if connect_early:
            self.start()

    def start(self) -> RayExecutor:
        """Begin connecting to Ray in the background (a run waits for it; without this call the run connects)."""
        self._connection.start()
        return self

    def close(self) -> None:
        """Shut down a Ray session this executor opened (a run does it at its end)."""
        self._connection.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_connection"] = RayConnection(self.address, self.local_num_cpus)  # a copy connects on its own
        return state

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, num_cpus_per_worker={self.num_cpus_per_worker}, "
                f"num_gpus_per_worker={self.num_gpus_per_worker}, concurrency={self.concurrency}, max_retries={self.max_retries})")

    # ------------------------------------------------------------------------------------------
    def _actors_wanted(self, ray) -> int:
        if self.concurrency is not None:
            return self.concurrency
        resources = ray.cluster_resources()
        fits = int(resources.get("CPU", 1) // self.num_cpus_per_worker)
        if self.num_gpus_per_worker > 0:
            fits = min(fits, int(resources.get("GPU", 0) // self.num_gpus_per_worker))
        if fits < 1:
            raise RuntimeError(f"the Ray cluster has {resources.get('CPU', 0)} CPUs and {resources.get('GPU', 0)} GPUs: not one "
                               f"worker with {self.num_cpus_per_worker} CPUs and {self.num_gpus_per_worker} GPUs fits.")
        return fits

    def _check_shared_storage(self, ray, output_dir: Path) -> None:
        """On a multi-node cluster, every node must see ``output_dir`` (workers write masks there)."""
        nodes = alive_nodes(ray)
        if len(nodes) < 2:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = output_dir / f".ray-probe-{uuid.uuid4().hex}"
        probe.write_text("monai-ils\n")
        try:
            check = ray.remote(num_cpus=0)(_probe_exists)
            refs = {node["NodeManagerAddress"]: check.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(str(probe)) for node in nodes}
            blind = [host for host, ref in refs.items() if not ray.get(ref)]
        finally:
            probe.unlink(missing_ok=True)
        if blind:
            raise RuntimeError(
                f"the output folder {output_dir} is not visible from Ray node(s) {', '.join(sorted(blind))}: workers write "
                f"masks there, so it must be shared storage mounted at the same path on every node (see docs/scale.md)."
            )

    def _worker_copy(self, task):
        """The task a worker gets: its output folder made absolute (workers may start elsewhere)."""
        worker = copy.copy(task)
        worker.output_dir = Path(task.output_dir).absolute()
        return worker

    # ------------------------------------------------------------------------------------------
    def map(self, task, items: Iterable) -> Iterator[tuple[object, dict | None]]:
        """``(item, task(item.record))`` in input order; ``(item, None)`` for items with ``todo=False``
        (the :class:`~monai_ils.generation.executors.OrderedExecutor` contract)."""
        import time

        began, began_wall = time.perf_counter(), time.time()
        connection = self._connection
        try:
            ray = connection.wait()
            connected = time.perf_counter()
            yield from self._map(ray, task, items, began, began_wall)
        finally:
            connection.close()
        timing = self.last_run.setdefault("timing", {})
        timing["connect_s"] = connection.connect_s  # ray.init itself (it may have begun before the run)
        timing["connected_s"] = connected - began  # what the run waited for it
        timing["total_s"] = time.perf_counter() - began  # shutting a private Ray down included

    def _map(self, ray, task, items, began: float, began_wall: float):
        import time

        from ray import cloudpickle
        from ray.exceptions import RayTaskError

        self._check_shared_storage(ray, Path(task.output_dir).absolute())
        n = self._actors_wanted(ray)
        actor_class = ray.remote(_StudyWorker).options(num_cpus=self.num_cpus_per_worker, num_gpus=self.num_gpus_per_worker,
                                                      max_restarts=0, max_task_retries=0, max_concurrency=1)
        shared = ray.put(cloudpickle.dumps(self._worker_copy(task)))
        cwd, path = os.getcwd(), [p for p in sys.path if p and os.path.isdir(p)]
        threads = max(1, int(self.num_cpus_per_worker))
        stats = {"actors": n, "restarts": 0, "retried": 0, "worker_errors": 0, "timing": {}}
        self.last_run = stats
        attempts: dict = {}

        def started(actors):
            try:
                ray.get([a.ready.remote() for a in actors])
            except Exception as err:
                raise RuntimeError(f"a Ray worker could not start ({type(err).__name__}): {_first_line(err)}") from err
            return actors

        def start_one(slot):
            stats["restarts"] += 1
            return started([actor_class.remote(shared, cwd, path, threads)])[0]

        def process(actor, item):
            return actor.process.remote(item.record)

        def on_death(item, err):
            if getattr(err, "actor_init_failed", False):  # it never started: no study to blame, stop the run
                raise RuntimeError(f"a Ray worker could not start ({type(err).__name__}): {_first_line(err)}") from err
            position, record = item.position, item.record
            attempts[position] = attempts.get(position, 0) + 1
            logger.warning("Ray worker died with study %s (attempt %d of %d): %s", record.key, attempts[position],
                           self.max_retries + 1, type(err).__name__)
            if attempts[position] <= self.max_retries:
                stats["retried"] += 1
                return RETRY
            stats["worker_errors"] += 1
            return _died_line(record, err, attempts[position])

        actors: list = []
        results = None
        try:
            # No wait for the actors to start: their first studies queue on them meanwhile. One that cannot start
            # fails its first study with actor_init_failed, which stops the run (on_death).
            actors.extend(actor_class.remote(shared, cwd, path, threads) for _ in range(n))
            results = ordered_actor_map(ray, actors, start_one, items, process, on_death, needs_work=lambda item: item.todo,
                                        depth=self.depth)
            first = None
            while True:
                try:
                    item, line = next(results)
                except StopIteration:
                    break
                except RayTaskError as err:  # the writer records every Exception: this was a BaseException
                    raise RuntimeError(f"a Ray worker stopped the run: {_first_line(err)}") from err
                if first is None:
                    first = time.perf_counter() - began
                yield item, line
            done = time.perf_counter() - began
            workers = ray.get([a.stats.remote() for a in actors], timeout=60)
            stats["worker_peak_rss_mib"] = [w["peak_rss_mib"] for w in workers]
            stats["workers"] = workers
            ready = [w["ready_at"] - began_wall for w in workers]
            up = sum(max(1e-9, done - r) for r in ready)  # actor-seconds from ready to the last result
            stats["timing"].update(actors_ready_s=max(ready), first_result_s=first, results_done_s=done,
                                   first_study_s=max((w["first_study_s"] or 0.0 for w in workers), default=0.0),
                                   busy_share=sum(w["busy_s"] for w in workers) / up)
        finally:
            if results is not None:
                results.close()
            for actor in actors:
                ray.kill(actor)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__


def _died_line(record, err: BaseException, attempts: int) -> dict:
    """The error record of a study whose worker died ``attempts`` times (same shape as the writer's)."""
    from monai_ils.generation.results import StageError, error_record

    failure = StageError("worker", f"the Ray worker processing this study died {attempts} time(s) "
                                   f"({type(err).__name__}; out of memory or a crash in native code?)")
    line = {"key": record.key, "split": record.split, "status": "error", "samples": [], "info": {}}
    line["error"] = error_record(record, failure)
    return line
