"""One pool of 8 worker actors for the whole test session, on the session's one Ray (``local_ray``).

Every live test in tests/runtime/ shares it (``ray_pool``): actors at 0.25 CPU import torch once,
and each ``train(..., pool=ray_pool)`` ships its own run context with every call.
"""

import pytest

POOL_SIZE = 8


@pytest.fixture(scope="session")
def ray_pool(local_ray):
    from gcode.config import ClusterConfig
    from gcode.runtime.cluster import start_workers

    pool = start_workers(ClusterConfig(workers=POOL_SIZE, max_restarts=1000, startup_timeout_s=120))
    try:
        yield pool
    finally:
        pool.kill()
