"""cluster/netns.sh: Ray nodes in network namespaces with tc-limited links, a command run beside
the head, everything torn down (namespaces deleted, no process left, the exit status passed on)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
NETNS = REPO / "cluster" / "netns.sh"


def run(*args, timeout=600):
    return subprocess.run([str(NETNS), *args], check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "GCODE_PYTHON": sys.executable})


def namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def test_usage_errors_are_one_line():
    assert "tbf" in run("--help").stdout
    for args, msg in [(["--nodes", "0", "--", "true"], "--nodes must be"),
                      (["--rate", "1g", "--", "true"], "--rate must"),
                      (["--prefix", "Bad!", "--", "true"], "--prefix must"), (["--nodes", "2"], "no command"),
                      (["--timeout", "5", "--", "true"], "--timeout must")]:
        res = run(*args)
        assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and msg in res.stderr, res.stderr


needs_netns = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"),
                                 reason="needs root and iproute2 (network namespaces, tc)")


@needs_netns
@pytest.mark.ray
@pytest.mark.slow
def test_a_collective_across_namespaces_then_everything_is_gone():
    prefix = f"gt{os.getpid() % 1000}"
    res = run("--nodes", "2", "--rate", "200mbit", "--prefix", prefix, "--timeout", "500", "--",
              sys.executable, str(REPO / "tests" / "runtime" / "collective" / "netns_driver.py"))
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["nodes"] == ["10.77.0.1", "10.77.0.2", "10.77.0.3"] and out["host"] == "10.77.0.2"
    assert all(s == [3.0] * 8 for s in out["sums"])
    assert namespaces(prefix) == [] and "removed namespaces" in res.stderr


@needs_netns
@pytest.mark.ray
@pytest.mark.slow
def test_the_timeout_ends_the_command_and_tears_down():
    prefix = f"gu{os.getpid() % 1000}"
    res = run("--nodes", "1", "--rate", "100mbit", "--prefix", prefix, "--timeout", "30", "--",
              "sleep", "600")
    assert res.returncode == 124 and "--timeout 30s reached" in res.stderr
    assert namespaces(prefix) == []
    kept = [line.split("Ray logs kept in ")[1].split("/node*")[0] for line in res.stderr.splitlines()
            if "Ray logs kept in" in line]
    for path in kept:
        shutil.rmtree(path, ignore_errors=True)
