"""``executor: ray``: the generation runner's studies processed by Ray actors, lines written by the driver in input order.

Why Ray core actors rather than Ray Data ``map_batches``: the runner's guarantees are per study and ordered —
a line per study in input order, a bounded number of studies in flight, a dead worker's study retried a bounded
number of times and then recorded as an error, the partial shard resumed by either executor. Actors give that
directly: each actor builds the processor once (models loaded once per actor, on its GPU), takes one study at a
time, writes that study's masks/overlays into the output folder itself and returns its shard line (small JSON);
the driver keeps a window of ``2 x concurrency`` studies, hands each to a free actor, and writes the lines in
order exactly as the local runner does, so both executors produce the same bytes. A Ray Data pipeline would
reorder, batch and retry behind our back (and retry a poisoned study forever or fail the whole dataset).

Fault handling: an actor that dies (out of memory, a segfault in a native library, a lost node) is replaced by a
new one, and its study is tried again up to ``max_retries`` times; after that the study gets an error record
(stage ``worker``) and the run goes on. An actor that cannot even start (bad weights path) stops the run with
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

from monai_ils.distributed import RETRY, alive_nodes, check_address, ordered_actor_map, ray_session

logger = logging.getLogger(__name__)

__all__ = ["RayExecutor"]


class _StudyWorker:
    """The actor: one copy of the study task (writer + processor, built here on first use), one study at a time."""

    def __init__(self, task, cwd: str, path: list[str]):
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative image/report paths of the input mean the same as on the driver
        for entry in reversed(path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        from ray import cloudpickle  # unpickled only now, so the modules it names import from the driver's paths

        self.task = cloudpickle.loads(task)

    def ready(self) -> int:
        return os.getpid()

    def process(self, record) -> dict:
        return self.task(record)

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
    """

    name = "ray"

    def __init__(self, address=None, num_cpus_per_worker: float = 1, num_gpus_per_worker: float = 0,
                 concurrency: int | None = None, max_retries: int = 2, local_num_cpus: int | None = None):
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
        self.local_num_cpus = local_num_cpus
        self.last_run: dict = {}

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
        with ray_session(self.address, self.local_num_cpus) as ray:
            yield from self._map(ray, task, items)

    def _map(self, ray, task, items):
        from ray import cloudpickle
        from ray.exceptions import RayTaskError

        self._check_shared_storage(ray, Path(task.output_dir).absolute())
        n = self._actors_wanted(ray)
        actor_class = ray.remote(_StudyWorker).options(num_cpus=self.num_cpus_per_worker, num_gpus=self.num_gpus_per_worker,
                                                      max_restarts=0, max_task_retries=0, max_concurrency=1)
        shared = ray.put(cloudpickle.dumps(self._worker_copy(task)))
        cwd, path = os.getcwd(), [p for p in sys.path if p and os.path.isdir(p)]
        stats = {"actors": n, "restarts": 0, "retried": 0, "worker_errors": 0}
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
            return started([actor_class.remote(shared, cwd, path)])[0]

        def process(actor, item):
            return actor.process.remote(item.record)

        def on_death(item, err):
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
            actors.extend(actor_class.remote(shared, cwd, path) for _ in range(n))
            started(actors)
            results = ordered_actor_map(ray, actors, start_one, items, process, on_death, needs_work=lambda item: item.todo)
            while True:
                try:
                    item, line = next(results)
                except StopIteration:
                    break
                except RayTaskError as err:  # the writer records every Exception: this was a BaseException
                    raise RuntimeError(f"a Ray worker stopped the run: {_first_line(err)}") from err
                yield item, line
            stats["worker_peak_rss_mib"] = ray.get([a.peak_rss_mib.remote() for a in actors], timeout=60)
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
