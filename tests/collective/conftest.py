"""One local Ray instance (loopback, reused if a session already started one) for the tests of this folder;
plane_actor.py has the actors."""

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session")
def local_ray():
    ray = pytest.importorskip("ray")
    started, temp = False, None
    if not ray.is_initialized():
        from gcode.runtime.cluster import start_local_ray
        temp = tempfile.mkdtemp(prefix="gccl")
        start_local_ray(num_cpus=2, temp_dir=temp)
        started = True
    import plane_actor
    ray.cloudpickle.register_pickle_by_value(plane_actor)  # workers cannot import tests/
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
