"""Sim-to-live agreement: a trace replayed through 8 live workers takes (within 10%) the time
that gcode.sim.simulate predicts for the same trace, time scale, scheme and policy, with the
load slope measured from the live run."""

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import config

from gcode.codes import make_scheme
from gcode.runtime import train
from gcode.sim import make_policy, simulate
from gcode.stragglers import load_trace

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TIME_SCALE = 0.4   # the bundled Lambda trace (~0.6-1.7 s) becomes rounds of ~0.25-0.7 s
SCHEME = {"name": "msgc", "B": 1, "W": 2, "lam": 3}


@pytest.mark.parametrize("dispatch", ["round", "arrival"])
def test_live_runtime_matches_the_simulator(ray_pool, dispatch):
    """Under dispatch at arrival both sides start an arrived worker's next round at once (the
    live run with M = T+2 models, so that every round may start early)."""
    with resources.as_file(resources.files("gcode") / "data" / "lambda-cnn-w256-r30-canada.csv") as p:
        trace_path = str(p)
        trace = load_trace(p)
    n = 8
    assert trace.shape[1] > n   # 256 columns: the live run uses the first 8
    params = {k: v for k, v in SCHEME.items() if k != "name"}
    jobs = trace.shape[0] - make_scheme("msgc", n=n, jobs=1, **params).delay
    models = None if dispatch == "round" else make_scheme("msgc", n=n, jobs=1, **params).delay + 2
    cfg = config(scheme={**SCHEME, "jobs": jobs}, cluster={"workers": n},
                 train={"models": models, "check_decode": False, "dispatch": dispatch},
                 inject={"trace": trace_path, "time_scale": TIME_SCALE})
    live = train(cfg, pool=ray_pool)
    scheme = make_scheme("msgc", n=n, jobs=jobs, B=1, W=2, lam=3)
    sim = simulate(scheme, trace, make_policy("paper", mu=1.0), load_slope=live["load_slope_s"],
                   time_scale=TIME_SCALE, dispatch=dispatch)
    ratio = live["runtime_s"] / sim.runtime_s
    # the same with the load slope from the workers' compute time alone (no transport)
    sim_compute = simulate(make_scheme("msgc", n=n, jobs=jobs, B=1, W=2, lam=3), trace,
                           make_policy("paper", mu=1.0),
                           load_slope=live["compute_s_mean"] / live["load"], time_scale=TIME_SCALE,
                           dispatch=dispatch)
    per_round = np.abs(np.array(live["durations_s"]) - np.array(sim.durations))
    report = {"live_runtime_s": live["runtime_s"], "sim_runtime_s": sim.runtime_s,
              "ratio": ratio, "live_waits": live["waits"], "sim_waits": sim.waits,
              "ratio_compute_only_slope": live["runtime_s"] / sim_compute.runtime_s,
              "load_slope_s": live["load_slope_s"], "rounds": live["rounds"],
              "overhead_s_per_round": live["overhead_s_per_round"],
              "median_round_abs_diff_s": float(np.median(per_round)), "n": n,
              "time_scale": TIME_SCALE, "scheme": SCHEME, "dispatch": dispatch,
              "dispatched_at_arrival": live["dispatched_at_arrival"]}
    out = Path(os.environ.get("GCODE_RESULTS", "results"))
    out.mkdir(exist_ok=True)
    (out / f"sim_live_{dispatch}.json").write_text(json.dumps(report, indent=2))
    print("sim-to-live:", json.dumps(report))
    assert live["decoded_jobs"] == jobs
    assert abs(ratio - 1) <= 0.10, report
