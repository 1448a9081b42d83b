"""`gcode train` with no arguments (digits, 4 workers, auto among T = 0 schemes: one model) runs
to the end and learns.

Its wall time is measured by benchmarks, not asserted here (a loaded machine makes it flaky)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_default_gcode_train_runs_and_learns():
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    proc = subprocess.run([sys.executable, "-m", "gcode", "train", "--json", "--quiet"], env=env,
                          capture_output=True, text=True, check=False, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["scheme"] == "auto" and res["n"] == 4 and res["decoded_jobs"] == res["jobs"] == 40
    # one model, every step: the tuner only switches among T = 0 schemes (uncoded, GC)
    assert res["models"] == 1 and res["steps_per_model"] == 40 and res["delay_T"] == 0
    assert all(seg["scheme"] in ("uncoded", "gc") for seg in res["params"]["segments"])
    assert res["final_loss"][0] < 1.0          # digits MLP actually learns
