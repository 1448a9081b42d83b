"""The gap policy: a round ends once no worker has arrived for gap x the latest arrival's time
and the missing workers conform, in the simulator and the live decision alike; decoding stays
exact, and it spares M-SGC the stragglers that the earliest policy declares needlessly."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_partial import assert_exact_under_random_times

from gcode.codes import make_scheme
from gcode.config import ConfigError, from_dict
from gcode.sim import EarliestPolicy, GapPolicy, make_policy, simulate
from gcode.sim.rounds import End, FallBack, RoundState, Wait, decide
from gcode.sim.verify import run_pattern


def test_a_worker_trailing_by_a_hair_is_not_cut():
    times = np.array([1.0, 1.01, 3.0, 1.02, 1.03])
    conforms = lambda missing: missing.sum() <= 2
    gap = GapPolicy(0.05).resolve(times, conforms)
    assert gap.arrived.tolist() == [True, True, False, True, True] and not gap.fell_back
    assert gap.duration == pytest.approx(1.03 * 1.05)
    early = EarliestPolicy().resolve(times, conforms)  # cuts the worker at 1.03 as well
    assert early.arrived.tolist() == [True, True, False, True, False]


def test_a_gap_where_the_missing_do_not_conform_is_a_wait_and_the_round_goes_on():
    times = np.array([1.0, 2.0, 2.01, 5.0])
    out = GapPolicy(0.05).resolve(times, lambda missing: missing.sum() <= 1)
    assert out.arrived.tolist() == [True, True, True, False] and out.fell_back
    assert out.duration == pytest.approx(2.01 * 1.05)


def test_a_round_without_a_gap_waits_for_everyone():
    times = np.array([1.0, 1.04, 1.08, 1.12])
    out = GapPolicy(0.05).resolve(times, lambda missing: True)
    assert out.arrived.all() and out.duration == 1.12 and not out.fell_back


def test_gap_must_be_positive():
    with pytest.raises(ValueError, match="gap must be > 0"):
        GapPolicy(0.0)
    assert make_policy("gap", gap=0.2) == GapPolicy(0.2)
    with pytest.raises(ConfigError, match="policy.gap"):
        from_dict({"policy": {"name": "gap", "gap": -1}})


def test_the_gap_reaches_the_config_from_the_flags_and_the_api():
    import argparse

    from gcode.api import CodingConfig, RunConfig, ScalingConfig, to_train_config
    from gcode.cli.train import add_train_arguments, config_from_args
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--scheme", "msgc", "--policy", "gap", "--gap", "0.2"]))
    assert (cfg.policy.name, cfg.policy.gap) == ("gap", 0.2)
    cfg = to_train_config(CodingConfig(scheme="gc", policy="gap", gap=0.3), ScalingConfig(), RunConfig())
    assert (cfg.policy.name, cfg.policy.gap) == ("gap", 0.3)


def _replay_live(times: np.ndarray, policy, conforms):
    """Drive :func:`decide` as the coordinator does: wake at each Wait's deadline or at the next
    arrival, whichever is first; returns the End (fell_back recorded as the coordinator does)."""
    order = np.argsort(times, kind="stable")
    state, now, k = RoundState(len(times)), 0.0, 0
    for _ in range(4 * len(times) + 4):
        decision = decide(state, now, policy, conforms)
        if isinstance(decision, End):
            return decision
        if isinstance(decision, FallBack):
            state.fell_back = True
            continue
        assert isinstance(decision, Wait) and not decision.retry
        next_arrival = times[order[k]] if k < len(times) else math.inf
        if decision.until < next_arrival:
            now = decision.until
        else:
            state.arrived[int(order[k])] = float(next_arrival)
            now, k = float(next_arrival), k + 1
    raise AssertionError("the live decision never ended the round")


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 9), allowed=st.integers(0, 4),
       gap=st.sampled_from([0.01, 0.05, 0.3, 1.0]))
def test_live_decision_ends_where_the_simulator_does(seed, n, allowed, gap):
    rng = np.random.default_rng(seed)
    times = np.round(rng.exponential(1.0, n) + rng.integers(0, 3, n), 3) + 0.01
    conforms = lambda missing: missing.sum() <= allowed
    policy = GapPolicy(gap)
    want = policy.resolve(times, conforms)
    got = _replay_live(times, policy, conforms)
    assert got.arrived.tolist() == want.arrived.tolist()
    assert got.fell_back == want.fell_back
    if not want.arrived.all():
        assert got.cut == pytest.approx(want.duration)


def test_the_live_decision_waits_for_a_first_arrival_and_retries_failed_workers():
    policy, conforms = GapPolicy(0.05), lambda missing: missing.sum() <= 1
    assert decide(RoundState(3), 5.0, policy, conforms) == Wait(math.inf)
    state = RoundState(3, arrived={0: 1.0}, failed={1: "raised"})
    wait = decide(state, 1.01, policy, conforms)
    assert wait.until == pytest.approx(1.05) and wait.retry == (1,)
    assert isinstance(decide(state, 1.06, policy, conforms), FallBack)
    state.fell_back = True
    assert decide(state, 1.06, policy, conforms) == Wait(math.inf, (1,))


@pytest.mark.parametrize("name, params", [
    ("gc", {"s": 2, "gc_code": "fr"}), ("uncoded", {}), ("srsgc", {"B": 1, "W": 2, "lam": 2}),
    ("msgc", {"B": 2, "W": 3, "lam": 2, "gc_code": "fr"}), ("msgc", {"B": 1, "W": 2, "lam": 3}),
])
def test_decoding_is_exact_under_gap(name, params):
    rng = np.random.default_rng(5)
    for _ in range(20):
        scheme = make_scheme(name, n=7, jobs=8, **params)
        policy = GapPolicy(0.1)

        def stragglers(s, r):
            times = 1.0 + rng.exponential(0.05, s.n) + 3.0 * (rng.random(s.n) < 0.3)
            return ~policy.resolve(times, lambda m: s.conforms(r, m)).arrived

        decoded, failures, worst = run_pattern(scheme, rng, 16, stragglers)
        assert decoded == 8 and failures == 0 and worst < 1e-6


def test_msgc_on_the_versus_bench_stragglers_spends_less_time_under_gap_than_earliest():
    """docs/RESULTS.md's finding, in simulated seconds on the bench's default bursty table plus noisy
    compute: earliest cuts workers that trail by a hair, which spends the (1, 2, 2) window's two
    stragglers, so later rounds must wait for their real stragglers; gap does not."""
    from gcode.bench.versus import VersusConfig, delay_table
    from gcode.sim.load_model import LoadModel
    jobs, n, share = 16, 8, 1.0
    table, _ = delay_table(VersusConfig(jobs=jobs), jobs + 16, share)
    noisy = table + 0.05 * np.random.default_rng(0).standard_normal(table.shape)
    runtime, declared = {}, {}
    for policy in (EarliestPolicy(), GapPolicy(0.05)):
        scheme = make_scheme("msgc", n=n, jobs=jobs, B=1, W=2, lam=2, gc_code="fr")
        result = simulate(scheme, noisy, policy, LoadModel("additive", share * n))
        assert result.decoded_jobs == jobs
        runtime[policy.name] = result.runtime_s
        declared[policy.name] = int(result.stragglers.sum())
    injected = int((table[:jobs + 1] > 2 * table.min()).sum())  # stragglers sleep 3 x base
    assert declared["gap"] <= injected < declared["earliest"], (declared, injected)
    assert runtime["gap"] < 0.92 * runtime["earliest"], runtime


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["gc", "srsgc", "msgc"]), n=st.integers(4, 64),
       gap=st.floats(0.01, 0.5), heavy=st.floats(0.0, 0.6), seed=st.integers(0, 2**16))
def test_gap_policy_decodes_exactly_under_random_times_on_larger_n(name, n, gap, heavy, seed):
    assert_exact_under_random_times(name, n, GapPolicy(gap), heavy, seed)


def test_the_slack_simulation_decodes_every_job_for_every_scheme_and_policy():
    """benchmarks/sim_slack.py (docs/RESULTS.md's M-SGC (1, 2, 3) figures) on one small table: every
    (scheme, policy) decodes all its jobs and its ratio to DDP is a positive number."""
    import importlib.util
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "sim_slack.py"
    spec = importlib.util.spec_from_file_location("sim_slack", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ratios = module.vs_ddp(seed=0, slow=0.2, jobs=6)
    assert len(ratios) == len(module.SCHEMES) * len(module.POLICIES)
    assert all(np.isfinite(v) and v > 0 for v in ratios.values()), ratios
