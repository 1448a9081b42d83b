"""Traces from any cluster: the proportional load model, defaults that fit the trace's n, a
tuner grid bounded by n and the delay budget, and the censored view the tuner gets."""

import json

import numpy as np
import pytest
from hostile_helpers import gcode_in_process

from gcode.codes import make_scheme, srsgc_s
from gcode.codes.loads import msgc_load, srsgc_load
from gcode.sim import PaperPolicy, PartialWaitPolicy, Policy, simulate
from gcode.sim.fast import TraceView, bursty_runtimes
from gcode.sim.load_model import LoadModel
from gcode.sim.online import OnlineConfig, OnlineTuner
from gcode.sim.paper import PAPER_DEFAULTS, default_params
from gcode.sim.tune import TuneSettings, grid_size


def gpu_like_trace(rounds: int, n: int = 10, seed: int = 0) -> np.ndarray:
    """Per-worker times of a GPU cluster: a steady speed per worker, noise, and slow spells."""
    rng = np.random.default_rng(seed)
    speed = rng.uniform(0.8, 1.2, n)
    times = speed * rng.gamma(30, 1 / 30, size=(rounds, n))
    spell = rng.random((rounds, n)) < 0.04
    spell |= np.roll(spell, 1, axis=0) & (rng.random((rounds, n)) < 0.5)  # bursts
    return times * np.where(spell, rng.uniform(2.5, 5.0, (rounds, n)), 1.0)


def gcode(*args):
    """``gcode ARGS`` in this process (no interpreter start-up per call)."""
    return gcode_in_process(*args)


def test_proportional_model_scales_by_load_over_trace_load():
    base = np.array([[1.0, 2.0, 4.0]])
    assert LoadModel("proportional").times(base, 2 / 3).tolist() == [[2.0, 4.0, 8.0]]
    assert LoadModel("proportional", trace_load=0.5).times(base, 0.25).tolist() == [[0.5, 1.0, 2.0]]
    assert LoadModel("additive", 2.0).times(base, 0.5).tolist() == [[2.0, 3.0, 5.0]]
    model = LoadModel("proportional", trace_load=0.2)
    assert np.allclose(model.base(model.times(base, 0.7), 0.7), base)
    with pytest.raises(ValueError, match="trace_load must be in"):
        LoadModel("proportional", trace_load=0.0)
    with pytest.raises(ValueError, match="load model must be one of"):
        LoadModel("cubic")
    # bench live's calibration: a per-call intercept on top of the additive slope
    assert LoadModel("additive", 1.0, intercept=0.5).times(base, 0.5).tolist() == [[2.0, 3.0, 5.0]]
    with pytest.raises(ValueError, match="intercept applies to the additive"):
        LoadModel("proportional", intercept=0.1)


@pytest.mark.parametrize("policy", [PaperPolicy(1.0), PartialWaitPolicy(0.5)])
def test_vectorized_tuner_equals_the_state_machine_under_the_proportional_model(policy):
    trace = gpu_like_trace(60)
    loads = LoadModel("proportional", trace_load=0.1)
    jobs, n = 55, 10
    view = TraceView(trace, policy.mu)
    partial = isinstance(policy, PartialWaitPolicy)
    for name, (B, W), load_of, T in [("msgc", (1, 2), msgc_load, 1), ("msgc", (1, 3), msgc_load, 2),
                                     ("srsgc", (1, 3), srsgc_load, 1), ("srsgc", (2, 3), srsgc_load, 2)]:
        lams = np.array([1, 2, 4, 7] + ([10] if name == "msgc" else []))
        load = np.array([load_of(n, B, W, int(lam), "fr") for lam in lams])
        s = np.array([srsgc_s(B, W, int(lam)) for lam in lams]) if name == "srsgc" else None
        fast, waits = bursty_runtimes(view, B, W, lams, load, loads, jobs + T, partial, srsgc_s=s, jobs=jobs)
        for lam, f, w in zip(lams, fast, waits):
            scheme = make_scheme(name, n=n, jobs=jobs, B=B, W=W, lam=int(lam), gc_code="fr")
            full = simulate(scheme, trace, policy, loads)
            assert f == pytest.approx(full.runtime_s, rel=1e-12) and w == full.waits, (name, B, W, lam)


def test_default_parameters_fit_any_n_and_are_the_papers_at_256():
    assert {name: default_params(name, 256) for name in PAPER_DEFAULTS} == PAPER_DEFAULTS
    for n in (1, 2, 3, 5, 10, 17, 64, 300):
        for name in PAPER_DEFAULTS:
            params = default_params(name, n)
            if name == "srsgc" and n == 1:
                continue  # SR-SGC needs s >= 1 < n: it cannot run on one worker
            make_scheme(name, n=n, jobs=3, **params)  # valid, or this raises
    assert default_params("gc", 10) == {"s": 1} and default_params("msgc", 10)["lam"] == 1
    assert default_params("msgc", 64)["lam"] == 7 and default_params("srsgc", 64)["lam"] == 6


def test_tuner_grid_grows_with_n_and_the_delay_budget_not_the_trace_length():
    settings = lambda rounds: TuneSettings(jobs=rounds - 4)
    assert (grid_size(200, 10, settings(200)) == grid_size(2000, 10, settings(2000))
            == grid_size(20000, 10, settings(20000)))
    assert grid_size(30, 256, TuneSettings(jobs=26)) == 14080  # the authors' grid
    # lowering --jobs does not grow the grid past the delay budget (max_delay, 4 by default)
    assert grid_size(2000, 10, TuneSettings(jobs=100)) == grid_size(2000, 10, settings(2000))
    assert grid_size(2000, 10, TuneSettings(jobs=100, max_delay=6)) > grid_size(2000, 10, settings(2000))


class _Recording(Policy):
    name = "recording"

    def __init__(self):
        self.inner, self.seen = PaperPolicy(1.0), []

    def deadline(self, fastest):
        return self.inner.deadline(fastest)

    def observe(self, r, times, load, end, compute=None):
        self.seen.append((np.array(times), end))


def test_the_tuner_sees_only_what_a_live_coordinator_sees():
    """A worker cut off at the round's end has no time (NaN); the tuner keeps it just above the
    end, so it still straggles at that round's cut."""
    trace = gpu_like_trace(40)
    policy = _Recording()
    result = simulate(make_scheme("gc", n=10, jobs=40, s=2, gc_code="fr"), trace, policy, 0.0)
    assert len(policy.seen) == 40
    cut_off = 0
    for (times, end), stragglers, duration in zip(policy.seen, result.stragglers, result.durations):
        assert np.array_equal(np.isnan(times), stragglers) and end == duration
        assert (times[~stragglers] <= end).all()
        cut_off += stragglers.sum()
    assert cut_off > 0
    # the live coordinator tells the policy the same: arrivals, NaN for the rest, the round's end
    from types import SimpleNamespace

    from gcode.runtime.loop.reporting import Reporter
    from gcode.runtime.loop.stats import RunStats, Session
    live = _Recording()
    reporter = Reporter(SimpleNamespace(round_load=lambda r: 1 / 3), live, RunStats(), Session(),
                        n=3, writer=None)
    reporter.observe(0, {"arrival_s": {0: 1.0, 1: 1.5}, "wait_s": 2.0})
    (times, end), = live.seen
    assert np.isnan(times[2]) and times[:2].tolist() == [1.0, 1.5] and end == 2.0
    tuner = OnlineTuner(3, None, 0.0, OnlineConfig(min_history=2))  # observes, no decision yet
    tuner.observe(0, np.array([1.0, 1.5, np.nan]), 1 / 3, 2.0)
    assert tuner.replay.rows[-1][2] == np.inf  # a straggler under every candidate's cut


@pytest.mark.slow
def test_a_10_worker_2000_round_trace_end_to_end_with_the_proportional_model(tmp_path):
    path = tmp_path / "gpu.csv"
    np.savetxt(path, gpu_like_trace(2000), delimiter=",", fmt="%.6f")
    common = ["--trace", str(path), "--load-model", "proportional", "--trace-load", "0.1"]
    proc = gcode("simulate", *common, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["schemes"]
    assert set(rows) == {"uncoded", "ignore", "gc", "srsgc", "msgc", "auto"}
    for name, row in rows.items():
        assert "skipped" not in row and row["decoded_jobs"] == 1996 and row["runtime_s"] > 0, name
    assert rows["gc"]["params"]["s"] == 1 and rows["srsgc"]["params"]["lam"] == 1
    proc = gcode("tune", *common, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["evaluated"] == grid_size(2000, 10, TuneSettings(jobs=1996))
    assert set(out["best"]) == {"uncoded", "gc", "srsgc", "msgc"}
    print(f"tune on 10 workers x 2000 rounds: {out['elapsed_s']:.2f} s")  # measured, not asserted
    proc = gcode("simulate", *common, "--scheme", "auto", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["decoded_jobs"] == 1996


@pytest.mark.parametrize("args,message", [
    (["simulate", "--trace-load", "0.1"], "--trace-load applies to --load-model proportional only"),
    (["simulate", "--load-model", "proportional", "--load-slope", "1"],
     "--load-slope applies to --load-model additive"),
    (["tune", "--load-model", "proportional", "--trace-load", "0"],
     "argument --trace-load: must be a positive finite number"),
    (["tune", "--load-model", "proportional", "--trace-load", "2"], "--trace-load must be in (0, 1]"),
    (["simulate", "--load-slope", "-1"], "argument --load-slope: must be a finite number >= 0"),
    (["simulate", "--batch-size", "0"], "argument --batch-size: must be >= 1"),
])
def test_load_model_flags_give_one_clear_line(args, message):
    proc = gcode(*args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_short_trace_skips_what_cannot_run_instead_of_failing(tmp_path):
    path = tmp_path / "short.csv"
    np.savetxt(path, gpu_like_trace(2, n=3), delimiter=",")
    proc = gcode("simulate", "--trace", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "srsgc    skipped: trace has 2 rounds, the run needs 3" in proc.stdout
    assert "msgc " in proc.stdout and "uncoded" in proc.stdout
