"""Multi-node: a job on a 3-node ray.cluster_utils.Cluster on loopback (in a subprocess, since
this session already holds its own Ray), with one worker actor per node."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


def test_three_node_cluster_on_loopback():
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    proc = subprocess.run([sys.executable, str(HERE / "multinode_job.py")], env=env,
                          capture_output=True, text=True, check=False, timeout=240, cwd=HERE.parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    res = json.loads(line)
    assert res["nodes"] == 3                       # one worker actor on each node
    assert res["node_ips"] == ["127.0.0.1"]        # every node bound to loopback
    assert res["decoded_jobs"] == res["jobs"] == 8
    assert res["max_decode_rel_error"] < 1e-5
    assert res["transport"] == "ray"               # auto: workers on other nodes go through Ray
    assert res["shm_refused"].startswith("cluster.transport: shm needs every worker on the "
                                         "coordinator's node"), res["shm_refused"]
