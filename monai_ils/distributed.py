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

__all__ = ["import_ray", "ray_session", "check_address", "alive_nodes"]


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
