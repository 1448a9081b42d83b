"""Simulator, vectorized tuner and CLI tests on the real Lambda traces."""

import json

import numpy as np
import pytest
from hostile_helpers import gcode_in_process
from paths import TRACES

from gcode.codes import make_scheme, srsgc_s
from gcode.codes.loads import gc_load, msgc_load, srsgc_load
from gcode.sim import DeadlinePolicy, PaperPolicy, WaitAllPolicy, simulate
from gcode.sim.fast import TraceView, bursty_runtimes, s_per_round_runtimes
from gcode.sim.tune import TuneSettings, grid_search, tune
from gcode.stragglers import load_trace

R30 = TRACES / "lambda-cnn-w256-r30-canada.csv"
R20 = TRACES / "lambda-cnn-w256-r20-canada.csv"
SLOPE = 2.2013


@pytest.fixture(scope="module")
def trace30():
    return load_trace(R30)


@pytest.fixture(scope="module")
def trace20():
    return load_trace(R20)


@pytest.mark.parametrize("name,params,expected", [
    ("msgc", dict(B=1, W=2, lam=27, gc_code="cyclic"), 34.9365),
    ("uncoded", {}, 40.9836),
    ("gc", dict(s=11, gc_code="cyclic"), 35.8112),
])
def test_paper_policy_reproduces_published_replay(trace30, name, params, expected):
    result = simulate(make_scheme(name, n=256, jobs=26, **params), trace30, PaperPolicy(1.0), SLOPE)
    assert round(result.runtime_s, 4) == expected
    assert result.decoded_jobs == 26
    assert result.rounds == 26 + result.delay_T


@pytest.mark.parametrize("trace_name,jobs,params,expected,waits", [
    ("r30", 26, dict(B=2, W=3, lam=23), 36.1051, 2),
    ("r30", 26, dict(B=1, W=2, lam=27), 36.6973, 2),
    ("r30", 26, dict(B=3, W=4, lam=40), 38.3764, 0),
    ("r20", 16, dict(B=2, W=3, lam=25), 21.6454, 1),
])
def test_srsgc_reproduces_the_authors_replay(trace30, trace20, trace_name, jobs, params, expected,
                                            waits):
    """The authors' SR-SGC classes: free tail rounds, and a round that decodes its own job
    within the round does not count against (B, W, λ)."""
    trace = trace30 if trace_name == "r30" else trace20
    result = simulate(make_scheme("srsgc", n=256, jobs=jobs, gc_code="cyclic", **params), trace,
                      PaperPolicy(1.0), SLOPE)
    assert (round(result.runtime_s, 4), result.waits) == (expected, waits)
    assert result.decoded_jobs == jobs


def test_a_tail_round_with_no_task_costs_nothing(trace30):
    scheme = make_scheme("srsgc", n=256, jobs=26, B=2, W=3, lam=23)
    result = simulate(scheme, trace30, PaperPolicy(1.0), SLOPE)
    idle = [r for r in range(26, 28) if result.durations[r] == 0.0]
    assert idle and all(not result.stragglers[r].any() for r in idle)


def test_msgc_lambda_n_tail_round_is_free_where_the_authors_charge_it(trace20):
    """M-SGC with λ = n has no D2 code: once every D1 chunk of the last job is in, its tail round
    has no task, and gcode (live and simulated) runs nothing: 21.4865 s on the 20-round trace.
    The authors' M-SGC class runs all J + T rounds and charges that round (their SR-SGC class
    frees idle tail rounds): 22.6801 s, the first 17 rounds of the same run with a 17th job."""
    run = simulate(make_scheme("msgc", n=256, jobs=16, B=1, W=2, lam=256), trace20, PaperPolicy(1.0), SLOPE)
    assert round(run.runtime_s, 4) == 21.4865 and run.durations[16] == 0.0
    charged = simulate(make_scheme("msgc", n=256, jobs=17, B=1, W=2, lam=256), trace20, PaperPolicy(1.0),
                       SLOPE)
    assert round(sum(charged.durations[:17]), 4) == 22.6801
    assert charged.durations[:16] == run.durations[:16]


def _full(trace, name, params, jobs, time_scale=1.0):
    """The state-machine simulator with FR codes (exact, no linear solves: fast to decode)."""
    scheme = make_scheme(name, n=trace.shape[1], jobs=jobs, gc_code="fr", **params)
    return simulate(scheme, trace, PaperPolicy(1.0), SLOPE, time_scale)


@pytest.mark.parametrize("trace_name,jobs", [("r30", 26), ("r20", 16)])
def test_vectorized_runtimes_equal_the_state_machine_simulator(trace30, trace20, trace_name, jobs):
    trace = trace30 if trace_name == "r30" else trace20
    view = TraceView(trace, 1.0)
    n = 256
    for s in (1, 5, 11, 40):
        fast, waits = s_per_round_runtimes(view, np.array([s]), np.array([gc_load(n, s, "fr")]), SLOPE, jobs)
        full = _full(trace, "gc", dict(s=s), jobs)
        assert fast[0] == pytest.approx(full.runtime_s, rel=1e-12) and waits[0] == full.waits
    for name, (B, W), load, T in [("msgc", (1, 2), msgc_load, 1), ("msgc", (2, 3), msgc_load, 3),
                                  ("msgc", (1, 3), msgc_load, 2),
                                  ("srsgc", (2, 3), srsgc_load, 2), ("srsgc", (1, 3), srsgc_load, 1),
                                  ("srsgc", (3, 4), srsgc_load, 3), ("srsgc", (1, 2), srsgc_load, 1)]:
        lams = np.array([3, 12, 23, 27, 40, 60] + ([256] if name == "msgc" else []))
        loads = np.array([load(n, B, W, int(lam), "fr") for lam in lams])
        s = np.array([srsgc_s(B, W, int(lam)) for lam in lams]) if name == "srsgc" else None
        fast, waits = bursty_runtimes(view, B, W, lams, loads, SLOPE, jobs + T, srsgc_s=s, jobs=jobs)
        for lam, f, w in zip(lams, fast, waits):
            full = _full(trace, name, dict(B=B, W=W, lam=int(lam)), jobs)
            assert f == pytest.approx(full.runtime_s, rel=1e-12) and w == full.waits, (name, B, W, lam)


def test_tune_finds_the_authors_hindsight_best(trace30, trace20):
    best30 = tune(trace30, TuneSettings(jobs=26))["best"]
    assert best30["msgc"]["params"]["lam"] == 27 and round(best30["msgc"]["runtime_s"], 2) == 34.94
    best20 = tune(trace20, TuneSettings(jobs=16))["best"]
    # (1,2,256) has no D2 code: its last round is free once every D1 chunk is in
    assert best20["msgc"]["params"]["lam"] == 256 and round(best20["msgc"]["runtime_s"], 2) == 21.49
    assert best20["srsgc"]["params"] | {"gc_code": "cyclic"} == {"B": 2, "W": 3, "lam": 25,
                                                                  "gc_code": "cyclic"}
    for best in (best30, best20):
        assert best["msgc"]["runtime_s"] < best["uncoded"]["runtime_s"]


def test_grid_covers_the_paper_parameter_space(trace30):
    grids = grid_search(trace30, TuneSettings(jobs=26))
    assert len(grids["gc"].params) == 255
    assert len(grids["msgc"].params) == 4 * 256  # (B,W) in (1,2),(1,3),(2,3),(1,4)
    srsgc = {(p["B"], p["W"]) for p in grids["srsgc"].params}
    assert all((W - 1) % B == 0 and W < 26 and B <= 4 for B, W in srsgc)
    assert len(srsgc) == 24 + 12 + 8 + 6


def test_policies():
    times = np.array([1.0, 1.1, 1.5, 3.0])
    paper = PaperPolicy(1.0).resolve(times, lambda s: s.sum() <= 1)
    assert paper.duration == 2.0 and not paper.fell_back and paper.arrived.tolist() == [1, 1, 1, 0]
    strict = PaperPolicy(0.2).resolve(times, lambda s: s.sum() <= 1)
    assert strict.fell_back and strict.duration == 3.0 and strict.arrived.all()
    early = PaperPolicy(5.0).resolve(times, lambda s: True)
    assert early.duration == 3.0  # everyone is done before the cut
    assert DeadlinePolicy(1.2).resolve(times, lambda s: s.sum() <= 2).duration == 1.2
    assert WaitAllPolicy().resolve(times, lambda s: False).duration == 3.0
    with pytest.raises(ValueError, match="mu must be > 0"):
        PaperPolicy(0.0)


def test_time_scale_and_extra_columns(trace30):
    small = simulate(make_scheme("msgc", n=8, jobs=10, B=1, W=2, lam=2), trace30, PaperPolicy(1.0), 0.0, 0.1)
    ref = simulate(make_scheme("msgc", n=8, jobs=10, B=1, W=2, lam=2), trace30[:, :8] * 0.1,
                   PaperPolicy(1.0), 0.0)
    assert small.runtime_s == pytest.approx(ref.runtime_s)


def test_simulate_errors(trace30):
    with pytest.raises(ValueError, match="trace has 30 rounds, the run needs 31"):
        simulate(make_scheme("msgc", n=256, jobs=30, B=1, W=2, lam=27), trace30, PaperPolicy(1.0))
    with pytest.raises(ValueError, match="trace has 256 workers"):
        simulate(make_scheme("uncoded", n=300, jobs=3), trace30, PaperPolicy(1.0))
    with pytest.raises(ValueError, match="finite number of jobs"):
        simulate(make_scheme("uncoded", n=3), trace30, PaperPolicy(1.0))


def gcode(*args, check=True):
    """``gcode ARGS`` in this process: the same entry as ``python -m gcode`` without an interpreter
    start-up per call (tests/runtime/test_runtime_default_cli.py runs ``python -m gcode`` itself)."""
    proc = gcode_in_process(*args)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_simulate_json_acceptance():
    common = ["--trace", str(R30), "--jobs", "26", "--mu", "1", "--load-slope", "2.2013",
              "--policy", "paper", "--json"]
    out = json.loads(gcode("simulate", "--scheme", "msgc", "--B", "1", "--W", "2", "--lam", "27",
                           "--gc-code", "cyclic", *common).stdout)
    assert round(out["runtime_s"], 4) == 34.9365
    assert {"runtime_s", "rounds", "waits", "load", "delay_T"} <= set(out)
    out = json.loads(gcode("simulate", "--scheme", "gc", "--s", "11", "--gc-code", "cyclic", *common).stdout)
    assert round(out["runtime_s"], 4) == 35.8112
    out = json.loads(gcode("simulate", "--scheme", "uncoded", *common).stdout)
    assert round(out["runtime_s"], 4) == 40.9836


@pytest.mark.slow
def test_cli_simulate_dispatch_at_arrival(tmp_path):
    """--dispatch arrival: in --json, and the per-round logs it writes; schemes that cannot
    dispatch at arrival are skipped with the reason. Round dispatch keeps the pinned figures."""
    out = json.loads(gcode("simulate", "--dispatch", "arrival", "--json").stdout)["schemes"]
    assert out["msgc"]["dispatch"] == "arrival" and out["msgc"]["decoded_jobs"] == 26
    assert "srsgc is not one" in out["srsgc"]["skipped"] and "skipped" in out["auto"]
    by_round = json.loads(gcode("simulate", "--json").stdout)["schemes"]
    assert by_round["msgc"]["dispatch"] == "round"
    assert round(by_round["srsgc"]["runtime_s"], 4) == 36.1051
    # waiting for everyone, uncoded gains most: each worker's slow rounds are absorbed
    assert out["uncoded"]["runtime_s"] < by_round["uncoded"]["runtime_s"]
    gcode("simulate", "--scheme", "gc", "--s", "15", "--dispatch", "arrival", "--log",
          str(tmp_path / "gc"))
    assert (tmp_path / "gc.jsonl").stat().st_size > 0


def test_cli_default_simulate_compares_all_schemes():
    text = gcode("simulate").stdout
    for name in ("uncoded", "ignore", "gc", "srsgc", "msgc"):
        assert name in text
    assert "approximate" in text


def test_cli_tune_json_shape():
    out = json.loads(gcode("tune", "--trace", str(R20), "--jobs", "16", "--json").stdout)
    assert set(out["best"]) == {"uncoded", "gc", "srsgc", "msgc"}
    assert out["elapsed_s"] < 30
    assert set(out["best"]["msgc"]["params"]) >= {"B", "W", "lam"}


def test_cli_verify_gc_n256_s27():
    out = json.loads(gcode("verify", "--scheme", "gc", "--n", "256", "--s", "27", "--rounds", "8",
                           "--patterns", "3", "--seed", "1", "--json").stdout)
    assert out["failures"] == 0 and out["max_rel_error"] <= 1e-6
    assert out["patterns"] == 3 and out["decoded_jobs"] == 24


@pytest.mark.parametrize("args,message", [
    (["simulate", "--scheme", "msgc", "--B", "2", "--W", "2", "--lam", "3"], "B must satisfy 1 <= B < W"),
    (["simulate", "--scheme", "gc", "--s", "300"], "s must satisfy"),
    (["simulate", "--trace", "/no/such.csv"], "no such file"),
    (["simulate", "--jobs", "40", "--scheme", "uncoded"], "trace has 30 rounds"),
    (["simulate", "--policy", "deadline"], "needs deadline_s"),
    (["tune", "--jobs", "31"], "exceeds the trace"),
    (["verify", "--scheme", "msgc", "--n", "4", "--B", "1", "--W", "2", "--lam", "5"],
     "lam must satisfy lam <= n"),
    (["simulate", "--mu", "0"], "argument --mu: must be a positive finite number"),
])
def test_cli_errors_are_one_clear_line(args, message):
    proc = gcode(*args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_malformed_trace_names_line_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("1.0,2.0\n1.0,oops\n")
    proc = gcode("simulate", "--trace", str(bad), "--jobs", "1", check=False)
    assert proc.returncode == 2 and "line 2" in proc.stderr and "column 2" in proc.stderr


def test_cli_help_teaches():
    text = gcode("simulate", "--help").stdout
    assert "--load-slope" in text and "(1+mu)" in text


@pytest.mark.parametrize("mu", [1.0, 0.4])
def test_vectorized_partial_policy_equals_the_state_machine(trace30, trace20, mu):
    from gcode.sim import PartialWaitPolicy
    for trace, jobs in ((trace30, 26), (trace20, 16)):
        view = TraceView(trace, mu)
        for s in (3, 11):
            fast, waits = s_per_round_runtimes(view, np.array([s]), np.array([gc_load(256, s, "fr")]),
                                               SLOPE, jobs, partial=True)
            full = simulate(make_scheme("gc", n=256, jobs=jobs, s=s, gc_code="fr"), trace,
                            PartialWaitPolicy(mu), SLOPE)
            assert fast[0] == pytest.approx(full.runtime_s, rel=1e-12) and waits[0] == full.waits
        for name, (B, W), load, T in [("msgc", (1, 2), msgc_load, 1), ("msgc", (2, 3), msgc_load, 3),
                                      ("srsgc", (1, 3), srsgc_load, 1), ("srsgc", (2, 3), srsgc_load, 2)]:
            lams = np.array([4, 12, 27])
            loads = np.array([load(256, B, W, int(lam), "fr") for lam in lams])
            s = np.array([srsgc_s(B, W, int(lam)) for lam in lams]) if name == "srsgc" else None
            fast, waits = bursty_runtimes(view, B, W, lams, loads, SLOPE, jobs + T, partial=True,
                                          srsgc_s=s, jobs=jobs)
            for lam, f, w in zip(lams, fast, waits):
                scheme = make_scheme(name, n=256, jobs=jobs, B=B, W=W, lam=int(lam), gc_code="fr")
                full = simulate(scheme, trace, PartialWaitPolicy(mu), SLOPE)
                assert f == pytest.approx(full.runtime_s, rel=1e-12) and w == full.waits, (name, B, W, lam)
