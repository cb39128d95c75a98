"""Connecting to Ray (the optional ``distributed`` extra): one place for how monai-ils starts or joins a cluster.

``address=None`` starts a private local Ray (this machine only, no dashboard) that is shut down when the work is done;
``"auto"`` joins the cluster of this node (``ray start --head`` / a Ray job), ``"ray://host:10001"`` a remote
one through Ray Client. If Ray is already initialised in this process (a test, a notebook, a Ray job), that
session is used and left running.
"""

from __future__ import annotations

import contextlib
import logging

logger = logging.getLogger(__name__)

__all__ = ["import_ray", "ray_session", "check_address", "alive_nodes", "died_errors", "ordered_actor_map", "RETRY"]


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
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = check_address(address)
    options = {"log_to_driver": True, "configure_logging": False}
    if address is None:
        options.update(address="local", num_cpus=num_cpus, include_dashboard=False)  # never join a cluster by accident
    else:
        options["address"] = address
    ray.init(**options)
    logger.info("connected to Ray (%s): %s CPUs, %s GPUs", address or "local", ray.cluster_resources().get("CPU", 0),
                ray.cluster_resources().get("GPU", 0))
    try:
        yield ray
    finally:
        ray.shutdown()


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


def ordered_actor_map(ray, actors: list, start_actor, items, submit, on_death, needs_work=lambda item: True, window: int = 2):
    """Yield ``(item, result)`` in the order of ``items``, the work done by ``actors``, one task per actor at a time.

    ``submit(actor, item)`` returns an object ref; ``needs_work(item)`` False yields ``(item, None)`` in its
    turn without a task. At most ``window x len(actors)`` items are read ahead, so memory stays bounded and a
    changed input is noticed where it differs. An actor that dies is killed and replaced by ``start_actor(slot)``;
    ``on_death(item, error)`` returns :data:`RETRY` or the item's result. ``actors`` is updated in
    place, so the caller's ``finally`` can kill the current ones.
    """
    from collections import deque

    gone = died_errors(ray)
    idle = deque(range(len(actors)))
    queue: deque = deque()  # (index, item) waiting for an actor
    ahead: deque = deque()  # (index, item) not yet yielded
    done: dict = {}  # index -> result
    running: dict = {}  # ref -> (slot, index, item)
    source, exhausted = enumerate(items), False
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
        while idle and queue:
            slot = idle.popleft()
            index, item = queue.popleft()
            running[submit(actors[slot], item)] = (slot, index, item)
        if ahead and ahead[0][0] in done:
            index, item = ahead.popleft()
            yield item, done.pop(index)
            continue
        if not ahead:
            return
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            slot, index, item = running.pop(ref)
            try:
                done[index] = ray.get(ref)
            except gone as err:
                ray.kill(actors[slot])
                actors[slot] = start_actor(slot)
                outcome = on_death(item, err)
                if outcome is RETRY:
                    queue.appendleft((index, item))
                else:
                    done[index] = outcome
            idle.append(slot)
