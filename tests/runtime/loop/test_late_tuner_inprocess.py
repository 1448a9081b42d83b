"""The live tuner hears a cut worker's late result (``Policy.observe_late``) as the simulator's
does: the in-process transport (fake workers on a virtual clock), scheme auto."""

import numpy as np
from runtime_helpers import config

from gcode.runtime.run import execute, preset_workload_of
from gcode.runtime.transport.inprocess import Script
from gcode.sim.online import OnlineTuner

#: calls take 20 ms to reach a worker; worker 0 is 10 ms late in round 0, which auto starts
#: coded: cut, it answers before round 1's call reaches it, so its result comes in late
SCRIPT = Script(latency_s=0.02, delays={(0, 0): 0.01})


def run_auto(monkeypatch, **sections):
    tuners = []
    observe = OnlineTuner.observe

    def spy(self, *args, **kwargs):
        tuners.append(self)
        observe(self, *args, **kwargs)
    monkeypatch.setattr(OnlineTuner, "observe", spy)
    cfg = config(scheme={"name": "auto", "jobs": 8}, train={"models": 1}, **sections)
    res = execute(cfg, preset_workload_of(cfg), in_process=SCRIPT)[0]
    return res, tuners[-1]


def test_the_live_tuner_is_told_a_cut_workers_late_time(monkeypatch):
    res, tuner = run_auto(monkeypatch)
    assert res["stragglers"] == 1
    rounds = {e["r"]: (i, e) for i, e in enumerate(tuner.events) if e["kind"] == "round"}
    late = [(i, e) for i, e in enumerate(tuner.events) if e["kind"] == "late"]
    assert [(e["r"], e["worker"]) for _, e in late] == [(0, 0)]  # once per (round, worker)
    i, e = late[0]
    at, cut_round = rounds[0]
    assert np.isnan(cut_round["times"][0])      # cut in round 0 ...
    assert e["time"] > cut_round["end"]         # ... timed from round 0's dispatch, past its cut
    assert at < i < rounds[1][0]                # told before round 1's decision: it came in then
