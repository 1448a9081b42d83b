"""The earliest policy: the round ends at the first arrival after which the missing workers
conform, in the simulator and the live decision alike; decoding stays exact."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcode.codes import make_scheme
from gcode.sim import EarliestPolicy, make_policy, simulate
from gcode.sim.rounds import End, RoundState, Wait, decide
from gcode.sim.verify import run_pattern


def test_gc_ends_at_the_n_minus_s_th_arrival():
    times = np.array([0.5, 0.1, 0.9, 0.3, 0.7])
    out = EarliestPolicy().resolve(times, lambda missing: missing.sum() <= 2)
    assert out.duration == 0.5 and out.arrived.tolist() == [True, True, False, True, False]
    assert not out.fell_back


@pytest.mark.parametrize("name, params", [
    ("gc", {"s": 2, "gc_code": "fr"}), ("gc", {"s": 1}), ("uncoded", {}),
    ("srsgc", {"B": 1, "W": 2, "lam": 2}), ("msgc", {"B": 2, "W": 3, "lam": 2, "gc_code": "fr"}),
])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_simulated_rounds_end_at_the_earliest_conforming_arrival(name, params, seed):
    rng = np.random.default_rng(seed)
    scheme = make_scheme(name, n=6, jobs=10, **params)
    trace = rng.exponential(1.0, (scheme.total_rounds, 6))
    ref = make_scheme(name, n=6, jobs=10, **params)
    result = simulate(scheme, trace, make_policy("earliest"))
    assert result.decoded_jobs == 10 and result.waits == 0
    for r, duration in enumerate(result.durations):  # brute force: no earlier arrival conforms
        times = trace[r]
        ref.plan(r)
        earlier = [t for t in times if t < duration]
        for t in earlier:
            assert not ref.conforms(r, times > t)
        assert ref.conforms(r, result.stragglers[r])
        ref.record(r, ~result.stragglers[r])
        for t in range(max(0, r - ref.delay), r + 1):
            if ref.decodable(t):
                ref.decode(t)


def test_live_decision_matches():
    policy = EarliestPolicy()
    conforms = lambda missing: missing.sum() <= 1
    state = RoundState(3, arrived={0: 0.2})
    assert decide(state, 0.25, policy, conforms) == Wait(float("inf"))
    state.arrived[2] = 0.3
    d = decide(state, 0.3, policy, conforms)
    assert isinstance(d, End) and d.arrived.tolist() == [True, False, True] and not d.fell_back
    assert isinstance(decide(RoundState(3), 0.1, policy, lambda m: True), Wait)  # needs an arrival


@pytest.mark.parametrize("name, params", [("gc", {"s": 2}), ("srsgc", {"B": 1, "W": 3, "lam": 3}),
                                          ("msgc", {"B": 1, "W": 2, "lam": 3})])
def test_decoding_is_exact_under_earliest(name, params):
    rng = np.random.default_rng(4)
    for _ in range(20):
        scheme = make_scheme(name, n=7, jobs=8, **params)
        policy = EarliestPolicy()

        def stragglers(s, r):
            times = rng.exponential(1.0, s.n)
            return ~policy.resolve(times, lambda m: s.conforms(r, m)).arrived

        decoded, failures, worst = run_pattern(scheme, rng, 16, stragglers)
        assert decoded == 8 and failures == 0 and worst < 1e-6


def test_the_vectorized_tuner_models_earliest_as_mu_zero_with_the_partial_fallback():
    """fast.py at μ = 0 with the partial fallback ends each round exactly where EarliestPolicy
    does, so the online tuner can weigh the earliest policy like any μ."""
    from pathlib import Path

    from gcode.codes.loads import gc_load, msgc_load
    from gcode.sim.fast import TraceView, bursty_runtimes, s_per_round_runtimes
    from gcode.stragglers import load_trace
    trace = load_trace(Path(__file__).resolve().parents[2] / "gcode" / "data"
                       / "lambda-cnn-w256-r30-canada.csv")
    view, slope, jobs = TraceView(trace, 0.0), 2.2013, 26
    for s in (3, 11):
        fast, _ = s_per_round_runtimes(view, np.array([s]), np.array([gc_load(256, s, "fr")]), slope,
                                       jobs, partial=True)
        full = simulate(make_scheme("gc", n=256, jobs=jobs, s=s, gc_code="fr"), trace,
                        EarliestPolicy(), slope)
        assert fast[0] == pytest.approx(full.runtime_s, rel=1e-12)
    lams = np.array([4, 27])
    loads = np.array([msgc_load(256, 1, 2, int(lam), "fr") for lam in lams])
    fast, _ = bursty_runtimes(view, 1, 2, lams, loads, slope, jobs + 1, partial=True, jobs=jobs)
    for lam, f in zip(lams, fast):
        full = simulate(make_scheme("msgc", n=256, jobs=jobs, B=1, W=2, lam=int(lam), gc_code="fr"),
                        trace, EarliestPolicy(), slope)
        assert f == pytest.approx(full.runtime_s, rel=1e-12), lam
