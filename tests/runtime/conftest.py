"""One Ray instance and one pool of 8 worker actors for the whole test session.

Every live test in tests/runtime/ shares them (``ray_pool``): Ray starts once (loopback only,
no dashboard, auth off, 2 CPUs, actors at 0.25 CPU), actors import torch once, and each
``train(..., pool=ray_pool)`` ships its own run context with every call. Multi-process tests
(the 3-node cluster, the CLI default run) start their own Ray in a subprocess.
"""

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

POOL_SIZE = 8


@pytest.fixture(scope="session")
def ray_pool():
    ray = pytest.importorskip("ray")
    from gcode.config import ClusterConfig
    from gcode.runtime.cluster import start_local_ray, start_workers

    temp = tempfile.mkdtemp(prefix="gcrt")
    start_local_ray(num_cpus=2, temp_dir=temp)
    pool = start_workers(ClusterConfig(workers=POOL_SIZE, max_restarts=1000, startup_timeout_s=120))
    try:
        yield pool
    finally:
        pool.kill()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
