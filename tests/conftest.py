"""Shared test settings: a Ray environment that stays on this machine, and ONE local Ray instance
for the whole test session (``local_ray``), started by the first test that needs it.

Folders build on it (tests/runtime's ``ray_pool`` of worker actors, tests/runtime/collective's plane
actors); none starts Ray of its own in this process. Multi-process tests (the 3-node cluster,
the CLI default run) start their own Ray in a subprocess.

Tiers (markers registered in pyproject.toml): ``ray`` starts Ray, here or in a subprocess; ``slow``
takes more than a few seconds; ``gpu`` needs CUDA (skipped without it; its CPU path is a test of
its own, unmarked). The fast tier is ``-m "not slow and not ray"``. A test that uses ``local_ray``
(or ``ray_pool``/``plane_ray``, built on it) without the ``ray`` marker fails before Ray starts:
the marker is written in the test module, where ``-m`` and the reader both see it, rather than
added here behind the reader's back. An unmarked test that leaves Ray initialised in this process
fails too. A test that starts Ray in a subprocess cannot be seen from here: mark it ``ray``.
"""

import os
import shutil
import sys
import tempfile

import pytest

# Ray: no token auth and no cluster discovery beyond this machine (see PLATFORM.md).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before any fixture: a Ray test must say so, and a GPU test needs CUDA."""
    if "local_ray" in getattr(item, "fixturenames", ()) and item.get_closest_marker("ray") is None:
        pytest.fail(f"{item.nodeid} starts Ray (local_ray) but is not marked ray: add "
                    "`pytestmark = pytest.mark.ray` to its module", pytrace=False)
    if item.get_closest_marker("gpu") is not None:
        import torch
        if not torch.cuda.is_available():
            pytest.skip("needs CUDA")


def pytest_runtest_teardown(item):
    """A test not marked ray that left Ray running in this process (before the session's
    local_ray started it) started Ray itself: it fails, naming itself."""
    ray = sys.modules.get("ray")
    if (item.get_closest_marker("ray") is None and not _session.get("ray")
            and ray is not None and ray.is_initialized()):
        ray.shutdown()
        pytest.fail(f"{item.nodeid} started Ray in this process but is not marked ray", pytrace=False)


_session = {}  # "ray": True once local_ray has started the session's Ray


@pytest.fixture(scope="session")
def local_ray():
    """Ray on loopback with 2 CPUs, no dashboard; shut down at the end of the session."""
    ray = pytest.importorskip("ray")
    from gcode.runtime.cluster import start_local_ray

    temp = tempfile.mkdtemp(prefix="gcrt")
    start_local_ray(num_cpus=2, temp_dir=temp)
    _session["ray"] = True
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
