"""gcode trace from-log and gcode advise: per-worker times from run logs, the fitted load model,
and a recommendation with its confidence."""

import json

import numpy as np
import pytest

from gcode.advise import advise, from_log, from_trace, report
from gcode.jsonout import dumps
from gcode.sim.load_model import LoadModel
from gcode.stragglers import load_trace
from gcode.tracelog import read_run, write_trace


def _coordinator_log(path, rounds=8, n=4, load=0.25):
    """A coordinator JSONL like gcode train's: worker 3 is cut in round 2 and its late reply is
    logged in round 3; compute grows with the load, an injected sleep does not."""
    with open(path, "w") as f:
        for r in range(rounds):
            compute = {str(w): 0.4 + 0.01 * w for w in range(n)}
            sleep = {str(w): (2.0 if (r, w) == (2, 3) else 1.0) for w in range(n)}
            arrival = {w: compute[w] + sleep[w] + 0.05 for w in compute}
            record = {"round": r, "duration_s": 1.6, "wait_s": 1.55, "load": load, "stragglers": [],
                      "arrival_s": arrival, "compute_s": compute, "sleep_s": sleep}
            if r == 2:
                for key in ("arrival_s", "compute_s", "sleep_s"):
                    del record[key]["3"]
                record["stragglers"] = [3]
            if r == 3:
                record["cut_replies"] = [{"round": 2, "worker": 3, "compute_s": 0.43, "sleep_s": 2.0}]
            f.write(json.dumps(record) + "\n")


def test_a_coordinator_log_gives_every_workers_time_and_the_additive_slope(tmp_path):
    log = tmp_path / "run.jsonl"
    _coordinator_log(log)
    run = read_run(log)
    assert run.times.shape == (8, 4) and run.filled == 0 and run.replied == 1
    assert run.times[2, 3] == pytest.approx(0.43 + 2.0 + 0.05)  # from its late reply
    model = run.load_model()  # compute barely spreads, the sleep is the fixed part: additive
    assert model.kind == "additive"
    assert model.slope == pytest.approx(np.median([0.40, 0.41, 0.42, 0.43]) / 0.25)
    trace = run.trace(model)
    assert trace[0, 0] == pytest.approx(run.times[0, 0] - 0.25 * model.slope)


def test_a_simulators_run_log_reads_back_as_its_trace(tmp_path):
    trace = np.abs(np.random.default_rng(0).normal(1.0, 0.2, (12, 6))) + 0.1
    path = tmp_path / "t.csv"
    np.savetxt(path, trace, delimiter=",")
    from gcode.codes import make_scheme
    from gcode.sim import PaperPolicy
    from gcode.telemetry.sim_logging import simulate_with_log
    simulate_with_log(make_scheme("gc", n=6, jobs=12, s=1, gc_code="fr"), trace, PaperPolicy(1.0),
                      LoadModel("additive", 0.0), 1.0, str(tmp_path / "sim"))
    run = read_run(tmp_path / "sim.jsonl")
    assert np.allclose(run.times, trace[:run.times.shape[0]])


def test_advise_recommends_gc_for_a_persistent_straggler():
    trace = np.ones((20, 8)) + np.random.default_rng(1).uniform(0, 0.05, (20, 8))
    trace[:, 5] *= 6.0  # one worker always 6x slow
    result = advise(from_trace(trace, LoadModel("additive", 0.5)), bootstrap=20)
    assert result["recommended"]["coding_config"]["scheme"] == "gc"
    assert result["predicted"]["speedup_vs_uncoded"] > 2.0
    assert result["confidence"]["bootstrap"] == 20
    assert 0.0 <= result["confidence"]["stays_best_within_1pct"] <= 1.0
    text = report(result)
    assert "gcode.CodingConfig(scheme='gc'" in text and "--scheme gc" in text


def test_one_model_unless_asked_for_more():
    trace = np.ones((20, 8)) + np.random.default_rng(2).uniform(0, 0.05, (20, 8))
    trace[np.arange(20), np.arange(20) % 8] *= 4.0  # a different straggler every round
    one = advise(from_trace(trace, LoadModel("additive", 0.5)), bootstrap=0)
    two = advise(from_trace(trace, LoadModel("additive", 0.5)), models=2, bootstrap=0)
    assert one["recommended"]["candidate"]["scheme"] in ("uncoded", "gc")
    assert two["predicted"]["runtime_s"] <= one["predicted"]["runtime_s"]


def test_trace_from_log_and_advise_on_a_log(tmp_path):
    log = tmp_path / "run.jsonl"
    _coordinator_log(log, rounds=10)
    out = tmp_path / "run.csv"
    told = write_trace(log, out)
    assert "additive" in told and "--load-slope" in told
    assert load_trace(out).shape == (10, 4)
    result = json.loads(dumps(advise(from_log(log), bootstrap=5)))
    assert result["rounds"] == 10 and result["load_model"]["kind"] == "additive"
    assert set(result["predicted"]) >= {"speedup_vs_uncoded", "speedup_vs_ddp"}
    assert from_log(log).replied == 1


@pytest.mark.parametrize("content,message", [
    ("not json\n", "line 1 is not JSON"), ('{"round": 0}\n', "has no arrival_s"), ("", "holds no rounds"),
])
def test_bad_logs_are_named_in_one_line(tmp_path, content, message):
    log = tmp_path / "bad.jsonl"
    log.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        read_run(log)
    assert str(log) in str(err.value) and "\n" not in str(err.value)
