"""Connecting to Ray (the optional ``distributed`` extra): one place for how monai-ils starts or joins a cluster.

``address=None`` starts a private local Ray (this machine only, no dashboard) that is shut down when the work is done;
``"auto"`` joins the cluster of this node (``ray start --head`` / a Ray job), ``"ray://host:10001"`` a remote
one through Ray Client. If Ray is already initialised in this process (a test, a notebook, a Ray job), that
session is used and left running.
"""

from __future__ import annotations

import contextlib
import logging
import threading

logger = logging.getLogger(__name__)

__all__ = ["import_ray", "ray_session", "RayConnection", "check_address", "alive_nodes", "died_errors", "ordered_actor_map", "RETRY"]


def import_ray():
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor 'ray' needs Ray: pip install 'monai-ils[distributed]' (ray[data]).") from err
    return ray


def check_address(address) -> str | None:
    """None, "auto", "local", "ray://host:port" or "host:port"; anything else is refused with the accepted forms."""
    if address is None:
        return None
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"ray_address must be null, 'auto', 'ray://host:port' or 'host:port', got {address!r}.")
    address = address.strip()
    if address in ("auto", "local") or address.startswith("ray://"):
        return address
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"ray_address must be null, 'auto', 'ray://host:port' or 'host:port', got {address!r}.")
    return address


@contextlib.contextmanager
def ray_session(address=None, num_cpus: int | None = None):
    """Yield the ``ray`` module with a connected session; shut down only a session started here."""
    connection = RayConnection(address, num_cpus)
    try:
        yield connection.wait()
    finally:
        connection.close()


class RayConnection:
    """A Ray session, optionally opened in the background so the driver goes on (indexing its input) meanwhile.

    :meth:`start` begins ``ray.init`` in a thread and returns at once; :meth:`wait` returns the ``ray`` module
    once connected, raising what the connection raised (without a :meth:`start` it connects in the calling
    thread); :meth:`close` shuts down a session opened here. A session that was already initialised in this
    process (a test, a notebook, a Ray job) is used and left running. The thread that called ``ray.init`` stays
    alive until :meth:`close`: a local Ray's processes get a parent-death signal when that thread ends.
    ``connect_s`` is how long ``ray.init`` took.
    """

    def __init__(self, address=None, num_cpus: int | None = None):
        self.address, self.num_cpus = check_address(address), num_cpus
        self.connect_s: float | None = None
        self._thread: threading.Thread | None = None
        self._up, self._release = threading.Event(), threading.Event()
        self._error: BaseException | None = None
        self._open = False  # connected (inline or in the thread) and not closed
        self._owned = False  # ray.init was called here
        self._lock = threading.Lock()

    def start(self) -> RayConnection:
        """Begin connecting in the background (a no-op when already connecting or connected)."""
        with self._lock:
            if self._thread is None and not self._open:
                self._up.clear()
                self._release.clear()
                self._error = None
                self._thread = threading.Thread(target=self._background, name="ray-connect", daemon=True)
                self._thread.start()
        return self

    def _connect(self) -> None:
        import time

        start = time.perf_counter()
        try:
            ray = import_ray()
            if not ray.is_initialized():
                options = {"log_to_driver": True, "configure_logging": False}
                if self.address is None:  # never join a cluster by accident
                    options.update(address="local", num_cpus=self.num_cpus, include_dashboard=False)
                else:
                    options["address"] = self.address
                ray.init(**options)
                self._owned = True
                resources = ray.cluster_resources()
                logger.info("connected to Ray (%s): %s CPUs, %s GPUs", self.address or "local", resources.get("CPU", 0), resources.get("GPU", 0))
            self._open = True
        finally:
            self.connect_s = time.perf_counter() - start

    def _background(self) -> None:
        try:
            self._connect()
        except BaseException as err:  # handed to wait()
            self._error = err
        finally:
            self._up.set()
        self._release.wait()  # keep the local Ray's parent thread alive until close()

    def wait(self):
        """The connected ``ray`` module."""
        with self._lock:
            thread = self._thread
            if thread is None and not self._open:
                self._connect()  # no background start: connect here
        if thread is not None:
            self._up.wait()
            if self._error is not None:
                error, self._error = self._error, None
                self._stop_thread()
                raise error
        return import_ray()

    def close(self) -> None:
        """Shut down the session if it was opened here; a later :meth:`start` or :meth:`wait` opens a new one."""
        with self._lock:
            if self._thread is not None:
                self._up.wait()
            if self._owned:
                import_ray().shutdown()
            self._owned = self._open = False
            self._stop_thread()

    def _stop_thread(self) -> None:
        self._release.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None


def alive_nodes(ray) -> list[dict]:
    return [node for node in ray.nodes() if node.get("Alive")]


def died_errors(ray) -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the worker process is gone" (not "the task raised")."""
    from ray.exceptions import RayActorError, WorkerCrashedError

    errors: tuple = (RayActorError, WorkerCrashedError)
    try:
        from ray.exceptions import OutOfMemoryError

        errors += (OutOfMemoryError,)
    except ImportError:  # older Ray
        pass
    return errors


RETRY = object()
"""Returned by ``on_death`` to queue the item again (first in line)."""


def ordered_actor_map(ray, actors: list, start_actor, items, submit, on_death, needs_work=lambda item: True, window: int = 2,
                      depth: int = 1):
    """Yield ``(item, result)`` in the order of ``items``, the work done by ``actors``, up to ``depth`` tasks per actor.

    ``submit(actor, item)`` returns an object ref; ``needs_work(item)`` False yields ``(item, None)`` in its
    turn without a task. At most ``window x len(actors)`` items are read ahead (and at least ``depth`` per
    actor), so memory stays bounded and a changed input is noticed where it differs. With ``depth`` 2 an
    actor (``max_concurrency=1``) has its next study queued while it works on one, so it never waits for
    the driver's round trip.

    An actor that dies is killed and replaced by ``start_actor(slot)``; its finished results are kept. If one
    of its tasks failed, that one killed it: ``on_death(item, error)`` decides (:data:`RETRY` or the item's
    result). If several failed (the one running, those queued behind it, or one whose reply the crash lost),
    none is blamed: they go back to the front of the queue as suspects, and a suspect runs alone on an idle
    actor, so a death while it runs is its own. ``actors`` is updated in place, so the caller's ``finally``
    can kill the current ones.
    """
    from collections import deque

    if int(depth) < 1:
        raise ValueError(f"depth must be >= 1, got {depth!r}.")
    depth = int(depth)
    window = max(int(window), depth)
    gone = died_errors(ray)
    load = [0] * len(actors)  # tasks in flight per slot
    alone = [False] * len(actors)  # the slot runs a suspect: nothing else goes to it
    suspects: set = set()  # indices whose last death could not be attributed
    queue: deque = deque()  # (index, item) waiting for an actor
    ahead: deque = deque()  # (index, item) not yet yielded
    done: dict = {}  # index -> result
    running: dict = {}  # ref -> (slot, index, item), in submission order
    source, exhausted = enumerate(items), False

    def replace(slot):
        """The actor of ``slot`` died: settle every task it had, start a new one."""
        mine = [(ref, index, item) for ref, (s, index, item) in running.items() if s == slot]  # submission order
        for ref, _, _ in mine:
            running.pop(ref)
        ray.kill(actors[slot])
        failed = []
        for ref, index, item in mine:
            try:
                done[index] = ray.get(ref)  # finished before the actor died
                suspects.discard(index)
            except gone as task_err:
                failed.append((index, item, task_err))
        actors[slot] = start_actor(slot)
        load[slot], alone[slot] = 0, False
        if len(failed) == 1:
            index, item, task_err = failed[0]
            suspects.discard(index)
            outcome = on_death(item, task_err)
            if outcome is RETRY:
                queue.appendleft((index, item))
            else:
                done[index] = outcome
        else:
            suspects.update(index for index, _, _ in failed)
            queue.extendleft(reversed([(index, item) for index, item, _ in failed]))

    def dispatch() -> None:
        while queue:
            index, item = queue[0]
            if index in suspects:
                free = [slot for slot in range(len(actors)) if load[slot] == 0]
                if not free:
                    return
                slot = free[0]
                alone[slot] = True
            else:
                open_slots = [slot for slot in range(len(actors)) if not alone[slot] and load[slot] < depth]
                if not open_slots:
                    return
                slot = min(open_slots, key=load.__getitem__)  # the least busy actor
            queue.popleft()
            running[submit(actors[slot], item)] = (slot, index, item)
            load[slot] += 1

    while True:
        while not exhausted and len(ahead) < window * len(actors):
            entry = next(source, None)
            if entry is None:
                exhausted = True
                break
            ahead.append(entry)
            if needs_work(entry[1]):
                queue.append(entry)
            else:
                done[entry[0]] = None
        dispatch()
        if ahead and ahead[0][0] in done:
            index, item = ahead.popleft()
            yield item, done.pop(index)
            continue
        if not ahead:
            return
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            if ref not in running:  # settled when its actor was replaced
                continue
            slot, index, item = running[ref]
            try:
                result = ray.get(ref)
            except gone:
                replace(slot)
                continue
            running.pop(ref)
            load[slot] -= 1
            if index in suspects:
                suspects.discard(index)
                alone[slot] = False
            done[index] = result
