"""The candidate replay equals the state-machine simulator, candidate by candidate, and a worker
cut off (+inf) is a straggler under every candidate's cut."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import TRACES

from gcode.sim import simulate
from gcode.sim.candidates import CandidateConfig, candidate_grid, code_load, tolerances
from gcode.sim.load_model import LoadModel
from gcode.sim.replay import CandidateReplay, whole_runs
from gcode.stragglers import load_trace

EVERY = CandidateConfig(gc_codes=("fr", "cyclic"), gc_all_policies=True, max_delay=2, grid_points=8)


def _equal_to_the_simulator(trace, jobs, loads, cfg, indices=None):
    n = trace.shape[1]
    grid = candidate_grid(n, cfg)
    fixed = whole_runs(grid, trace, jobs, loads)
    for i in indices if indices is not None else range(len(grid)):
        c = grid.candidates[i]
        result = simulate(c.make_scheme(n, jobs), trace, c.make_policy(), loads)
        assert fixed["runtime_s"][i] == pytest.approx(result.runtime_s, rel=1e-12, abs=1e-12), c.label()
        assert fixed["waits"][i] == result.waits, c.label()


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 9), ties=st.booleans(), proportional=st.booleans(), seed=st.integers(0, 2**16))
def test_every_candidate_runs_as_the_simulator_runs_it(n, ties, proportional, seed):
    rng = np.random.default_rng(seed)
    trace = rng.lognormal(0.0, rng.uniform(0.1, 1.2), (12, n))
    if ties:  # equal times, as rounded measurements have
        trace = np.round(trace, 1) + 0.1
    loads = LoadModel("proportional") if proportional else LoadModel("additive", float(rng.uniform(0, 2)))
    _equal_to_the_simulator(trace, 9, loads, EVERY)


@pytest.mark.parametrize("name,jobs", [("lambda-cnn-w256-r30-canada.csv", 26),
                                       ("lambda-cnn-w256-r20-canada.csv", 16)])
def test_the_replay_equals_the_simulator_on_the_lambda_traces(name, jobs):
    trace = load_trace(TRACES / name)
    grid = candidate_grid(256, CandidateConfig())
    sample = np.random.default_rng(0).choice(len(grid), 40, replace=False)
    _equal_to_the_simulator(trace, jobs, LoadModel("additive", 2.2013), CandidateConfig(), sample)


def test_a_worker_cut_off_is_a_straggler_under_every_cut():
    """Cut-off workers rank after every arrival and past every cut: a candidate that must wait
    for one has no known time (inf); one that ends at an arrival has its exact time; one that
    ends at its cut ends there, as it would if they were slower than the cut (never earlier
    than with the full times)."""
    n = 10
    grid = candidate_grid(n, CandidateConfig(gc_all_policies=True))
    times = np.linspace(1.0, 1.9, n)
    cut = times.copy()
    cut[-3:] = np.inf  # the three slowest were cut off
    full = CandidateReplay(grid, LoadModel("additive", 0.5)).step(times)
    seen = CandidateReplay(grid, LoadModel("additive", 0.5)).step(cut, end=1.65)
    known = np.isfinite(seen.durations)
    assert (seen.durations[known] >= full.durations[known]).all()
    for i, c in enumerate(grid.candidates):
        if c.scheme == "gc" and c.policy == "earliest":  # waits for the (n−s)-th arrival
            assert known[i] == (c.params["s"] >= 3), c.label()
            assert not known[i] or seen.durations[i] == full.durations[i]
    assert not known[0]  # uncoded waits for everyone


def test_fr_grids_keep_only_the_largest_s_of_each_load():
    for n in (8, 64, 256):
        s = tolerances("fr", n, 24)
        loads = [code_load("fr", n, int(v)) for v in s]
        assert len(set(loads)) == len(loads)  # one s per load
        assert all(code_load("fr", n, int(v) + 1) > code_load("fr", n, int(v)) for v in s if v + 1 < n)
