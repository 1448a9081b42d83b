"""The online auto scheme: decodes every job, switches, and never looks at future rounds."""

import numpy as np
import pytest
from paths import TRACES

from gcode.bench.auto import run_auto_bench
from gcode.sim import simulate
from gcode.sim.online import OnlineConfig, OnlineTuner
from gcode.stragglers import load_trace

CFG = OnlineConfig(window=4, every=1, margin=0.03, max_delay=1, gc_code="fr")


@pytest.mark.parametrize("name,jobs", [("lambda-cnn-w256-r30-canada.csv", 26),
                                       ("lambda-cnn-w256-r20-canada.csv", 16)])
def test_auto_decodes_every_job_and_switches(name, jobs):
    trace = load_trace(TRACES / name)
    tuner = OnlineTuner(256, jobs, 2.2013, CFG)
    result = simulate(tuner.scheme, trace, tuner, 2.2013)  # raises on any missed decode
    assert result.decoded_jobs == jobs
    assert len(tuner.scheme.switches) >= 1 and tuner.decisions


def test_decisions_use_only_past_rounds():
    trace = load_trace(TRACES / "lambda-cnn-w256-r30-canada.csv")
    altered = trace.copy()
    altered[12:] = np.random.default_rng(0).uniform(0.5, 3.0, altered[12:].shape)
    runs = []
    for t in (trace, altered):
        tuner = OnlineTuner(256, 26, 2.2013, CFG)
        simulate(tuner.scheme, t, tuner, 2.2013)
        runs.append(tuner)
    before = [[s for s in tuner.scheme.switches if s["round"] <= 12] for tuner in runs]
    assert before[0] == before[1]
    assert [d for d in runs[0].decisions if d["round"] <= 12] == [d for d in runs[1].decisions if d["round"] <= 12]


@pytest.mark.parametrize("field,value,message", [
    ("window", 1, "window must be >= 2"), ("every", 0, "every must be >= 1"),
    ("margin", 1.5, "margin must be in"), ("mus", (), "mus must be"), ("max_delay", -1, "max_delay"),
])
def test_online_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        OnlineConfig(**{field: value})


def test_bench_auto_protocol_with_a_tiny_grid():
    result = run_auto_bench(TRACES, grid={"window": (4,), "every": (1,), "margin": (0.03,), "max_delay": (1,)})
    assert all("-load" in name for name in result["meta_selection"]["traces"])
    assert set(result["traces"]) == {"lambda-cnn-w256-r30-canada.csv", "lambda-cnn-w256-r20-canada.csv"}
    for row in result["traces"].values():
        assert row["auto"]["decoded_jobs"] == row["jobs"]
        assert row["hindsight_msgc"]["runtime_s"] > 0


def test_window_statistics_describe_what_the_tuner_saw():
    from gcode.sim.online import window_statistics
    times = np.ones((4, 5))
    times[1:3, 2] = 5.0  # worker 2 straggles in rounds 1 and 2
    times[3, 4] = 3.0
    stats = window_statistics(times, mu=1.0)
    assert stats == {"rounds": 4, "stragglers_per_round": 0.75, "distinct_stragglers": 2,
                     "longest_burst": 2, "tail_ratio": stats["tail_ratio"]}
    assert stats["tail_ratio"] == pytest.approx(4.0)
