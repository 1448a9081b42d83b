"""Shared test settings: a Ray environment that stays on this machine, and ONE local Ray instance
for the whole test session (``local_ray``), started by the first test that needs it.

Folders build on it (tests/runtime's ``ray_pool`` of worker actors, tests/runtime/collective's plane
actors); none starts Ray of its own in this process. Multi-process tests (the 3-node cluster,
the CLI default run) start their own Ray in a subprocess.
"""

import os
import shutil
import tempfile

import pytest

# Ray: no token auth and no cluster discovery beyond this machine (see PLATFORM.md).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session")
def local_ray():
    """Ray on loopback with 2 CPUs, no dashboard; shut down at the end of the session."""
    ray = pytest.importorskip("ray")
    from gcode.runtime.cluster import start_local_ray

    temp = tempfile.mkdtemp(prefix="gcrt")
    start_local_ray(num_cpus=2, temp_dir=temp)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
