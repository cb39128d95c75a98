"""One local Ray for the distributed tests: this machine only, no dashboard, 2 CPUs, shut down when they end.

Ray 2.60 cannot be bound to the loopback interface (it replaces 127.0.0.1 by the node's address and listens on
all interfaces); its token authentication, on by default, keeps other hosts out.

Subprocess drivers (the kill-and-resume tests) join it through its GCS address, as a second driver on a
cluster does; their actors die with them, as on a real cluster.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")  # shut down when the distributed tests end: a Ray driver left running dies with its raylet
def ray_cluster(tmp_path_factory):
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    assert not ray.is_initialized()
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
