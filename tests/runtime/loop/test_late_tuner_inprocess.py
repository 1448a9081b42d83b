"""The live tuner hears a cut worker's late result (``Policy.observe_late``) as the simulator's
does: the in-process transport (fake workers on a virtual clock), scheme auto."""

import numpy as np
from runtime_helpers import config

from gcode.runtime.checkpoint import checkpoints_in, read_checkpoint, resume_config
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
    late = [(i, e) for i, e in enumerate(tuner.events) if e["kind"] == "lates"]
    assert [(e["r"], int(w)) for _, e in late for w in e["workers"]] == [(0, 0)]  # once per (round, worker)
    i, e = late[0]
    at, cut_round = rounds[0]
    assert np.isnan(cut_round["times"][0])      # cut in round 0 ...
    assert e["times"][0] > cut_round["end"]     # ... timed from round 0's dispatch, past its cut
    assert at < i < rounds[1][0]                # told before round 1's decision: it came in then


def test_a_late_event_is_checkpointed_and_replayed_on_resume(monkeypatch, tmp_path):
    """The checkpoint at round 2 holds the late event of round 0 (absorbed before it); the
    resumed tuner replays it, and the resumed run hears what the uninterrupted one did."""
    ck = {"dir": str(tmp_path / "ck"), "every": 2, "keep": 10}
    full, tuner = run_auto(monkeypatch, checkpoint=ck)
    path = checkpoints_in(tmp_path / "ck")[0]
    saved = read_checkpoint(path).tree["tuner"]["events"]
    assert (saved[1]["kind"], saved[1]["r"], list(saved[1]["workers"])) == ("lates", 0, [0])
    assert np.array_equal(saved[1]["times"], tuner.events[1]["times"])
    cfg = resume_config(path).replace(**{"checkpoint.dir": None})
    tuners = []
    observe = OnlineTuner.observe
    monkeypatch.setattr(OnlineTuner, "observe",
                        lambda self, *a, **k: (tuners.append(self), observe(self, *a, **k))[1])
    resumed = execute(cfg, preset_workload_of(cfg), in_process=SCRIPT)[0]
    events = tuners[-1].events
    assert same_events(events[:len(saved)], tuner.events[:len(saved)], rtol=0.0)  # replayed as saved
    assert same_events(events, tuner.events, rtol=1e-9)  # the virtual clock's offsets round apart
    assert resumed["param_checksum"] == full["param_checksum"]
    assert resumed["switches"] == full["switches"]


def same_events(a, b, rtol):
    def same(x, y):
        if isinstance(x, str) or x is None:
            return x == y
        return np.allclose(x, y, rtol=rtol, atol=0.0, equal_nan=True)
    return len(a) == len(b) and all(x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))
