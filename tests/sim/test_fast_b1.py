"""The auto tuner's fast paths equal the bitset replay and the state machine, bit for bit."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from paths import TRACES

from gcode.codes import srsgc_s
from gcode.codes.loads import msgc_load, srsgc_load
from gcode.sim import simulate
from gcode.sim.fast import TraceView, bursty_runtimes
from gcode.sim.fast_b1 import bursty_runtimes_b1
from gcode.sim.load_model import LoadModel
from gcode.sim.online import OnlineConfig, OnlineTuner
from gcode.stragglers import load_trace

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(n=st.integers(1, 300), rounds=st.integers(1, 10), W=st.integers(2, 6),
       srsgc=st.booleans(), partial=st.booleans(), ties=st.booleans(),
       proportional=st.booleans(), seed=st.integers(0, 2**16))
def test_b1_window_replay_equals_the_bitset_replay(n, rounds, W, srsgc, partial, ties, proportional, seed):
    rng = np.random.default_rng(seed)
    times = rng.lognormal(0.0, rng.uniform(0.01, 1.5), (rounds, n))
    if ties:  # many equal times, as workers censored at one round end have
        times = np.round(times, 1) + 0.1
    lams = np.unique(rng.integers(1, n + 1, 12))
    if srsgc:
        lams = lams[lams < n]
    assume(len(lams))
    mus = rng.choice([0.0, 0.25, 0.5, 1.0], len(lams))
    loads = np.array([(srsgc_load if srsgc else msgc_load)(n, 1, W, int(lam), "fr") for lam in lams])
    s = np.array([srsgc_s(1, W, int(lam)) for lam in lams]) if srsgc else None
    model = LoadModel("proportional") if proportional else LoadModel("additive", float(rng.uniform(0, 3)))
    view = TraceView(times, 0.5)
    expected = bursty_runtimes(view, 1, W, lams, loads, model, rounds, partial, srsgc_s=s, mus=mus)
    fast = bursty_runtimes_b1(view, W, lams, loads, model, rounds, partial, srsgc_s=s, mus=mus)
    assert expected[0].tobytes() == fast[0].tobytes() and expected[1].tolist() == fast[1].tolist()


@FAST
@given(n=st.integers(65, 400), rounds=st.integers(1, 6), ties=st.integers(0, 200),
       seed=st.integers(0, 2**16))
def test_straggler_counts_equal_a_comparison_of_every_time(n, rounds, ties, seed):
    """round_stats counts fl(a·t + c) > cut exactly, also when many workers share a time."""
    rng = np.random.default_rng(seed)
    times = rng.uniform(1.0, 3.0, (rounds, n))
    times[:, :min(ties, n)] = np.nextafter(2.0, np.inf)  # censored just above a round end
    a, c = rng.uniform(0.5, 2.0, 20), rng.uniform(0.0, 1.0, 20)
    mus = rng.choice([0.0, 0.25, 0.5, 1.0], 20)
    k, cut, _ = TraceView(times, 0.0).round_stats(a, c, mus)
    brute = (times[None, :, :] * a[:, None, None] + c[:, None, None] > cut[:, :, None]).sum(axis=2)
    assert k.tolist() == brute.tolist()


def _decisions(trace, n, jobs, cfg, model):
    tuner = OnlineTuner(n, jobs, model, cfg)
    result = simulate(tuner.scheme, trace, tuner, model)
    return result, tuner.decisions


@pytest.mark.parametrize("name,jobs,runtime,waits", [("lambda-cnn-w256-r30-canada.csv", 26, 28.1094, 0),
                                                     ("lambda-cnn-w256-r20-canada.csv", 16, 18.1408, 0)])
def test_the_auto_scheme_keeps_its_published_figures(name, jobs, runtime, waits):
    result, _ = _decisions(load_trace(TRACES / name), 256, jobs, OnlineConfig(),
                           LoadModel("additive", 2.2013))
    assert (round(result.runtime_s, 4), result.waits) == (runtime, waits)
