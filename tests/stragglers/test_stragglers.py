"""Tests for gcode.stragglers: reproducibility, shapes, bursty conformance (checked by an
independent brute-force window checker), detection, Gilbert-Elliott statistics, trace parsing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paths import TRACES

from gcode.stragglers import (
    MODELS,
    BurstyDelay,
    DelayModel,
    GilbertElliottDelay,
    ParetoDelay,
    ShiftedExponentialDelay,
    TraceDelay,
    TraceError,
    bursty_conforms,
    detect_stragglers,
    load_trace,
    make_delay_model,
)

TRACE = TRACES / "lambda-cnn-w256-r30-canada.csv"
BUNDLED = Path(__file__).resolve().parents[2] / "gcode" / "data" / "lambda-cnn-w256-r30-canada.csv"
TRACE_FILE = TRACE if TRACE.exists() else BUNDLED


# ---------------------------------------------------------------- brute-force window checkers


def _windows(mask: np.ndarray, W: int):
    """Every window of W consecutive rounds (the whole pattern if it is shorter)."""
    rounds = mask.shape[0]
    for start in range(max(1, rounds - W + 1)):
        yield mask[start:start + W]


def strictly_bursty(mask: np.ndarray, B: int, W: int, lam: int) -> bool:
    """Every window: <= lam distinct stragglers, and each worker's straggling rounds form one
    consecutive run of length <= B."""
    for window in _windows(mask, W):
        if np.count_nonzero(window.any(axis=0)) > lam:
            return False
        for col in window.T:
            rows = np.flatnonzero(col)
            if rows.size and (rows.size > B or rows[-1] - rows[0] + 1 != rows.size):
                return False
    return True


def spans_bursty(mask: np.ndarray, B: int, W: int, lam: int) -> bool:
    """SCHEMES.md's definition: every window: <= lam distinct stragglers, and each worker's
    straggling rounds lie within one run of at most B consecutive rounds (gaps allowed)."""
    for window in _windows(mask, W):
        if np.count_nonzero(window.any(axis=0)) > lam:
            return False
        for col in window.T:
            rows = np.flatnonzero(col)
            if rows.size and rows[-1] - rows[0] + 1 > B:
                return False
    return True


def online_conforms(mask: np.ndarray, B: int, W: int, lam: int) -> bool:
    return all(bursty_conforms(mask[:r], mask[r], B, W, lam) for r in range(mask.shape[0]))


@st.composite
def bwl(draw, max_n: int = 64):
    W = draw(st.integers(2, 12))
    B = draw(st.integers(1, W - 1))
    n = draw(st.integers(1, max_n))
    lam = draw(st.integers(0, n))
    return B, W, lam, n


# ---------------------------------------------------------------- common interface

MODEL_CASES = [
    BurstyDelay(B=2, W=4, lam=3),
    GilbertElliottDelay(),
    ShiftedExponentialDelay(),
    ParetoDelay(),
]


@pytest.mark.parametrize("model", MODEL_CASES, ids=lambda m: type(m).__name__)
def test_shape_dtype_positive_and_reproducible(model: DelayModel):
    a = model.sample(25, 7, seed=123)
    assert a.shape == (25, 7) and a.dtype == np.float64
    assert np.all(np.isfinite(a)) and np.all(a > 0)
    assert np.array_equal(a, model.sample(25, 7, seed=123))
    assert not np.array_equal(a, model.sample(25, 7, seed=124))
    assert model.sample(0, 3, seed=1).shape == (0, 3)


@pytest.mark.parametrize("model", MODEL_CASES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize(
    ("rounds", "n", "field"), [(-1, 3, "rounds"), (3, 0, "n"), (2.5, 3, "rounds"), (3, True, "n")]
)
def test_sample_rejects_bad_shape(model, rounds, n, field):
    with pytest.raises(ValueError, match=field):
        model.sample(rounds, n, seed=0)


def test_no_torch_or_ray_import():
    code = (
        "import sys, gcode.stragglers; "
        "bad = [m for m in ('torch', 'ray') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


# ---------------------------------------------------------------- bursty


@settings(max_examples=150, deadline=None)
@given(params=bwl(), rounds=st.integers(0, 40), p=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_bursty_pattern_always_conforms(params, rounds, p, seed):
    B, W, lam, n = params
    mask = BurstyDelay(B, W, lam, straggle_prob=p).pattern(rounds, n, seed)
    assert mask.shape == (rounds, n) and mask.dtype == bool
    assert strictly_bursty(mask, B, W, lam)
    assert online_conforms(mask, B, W, lam)
    assert not mask.all(axis=1).any()  # a non-straggler in every round


@settings(max_examples=100, deadline=None)
@given(params=bwl(max_n=6), rounds=st.integers(0, 15), density=st.floats(0, 0.5),
       seed=st.integers(0, 2**32 - 1))
def test_bursty_conforms_matches_window_definition(params, rounds, density, seed):
    B, W, lam, n = params
    mask = np.random.default_rng(seed).random((rounds, n)) < density
    assert online_conforms(mask, B, W, lam) == spans_bursty(mask, B, W, lam)


def test_bursty_conforms_examples():
    # B=2, W=4, lam=2 over 3 workers.
    h = np.array([[1, 0, 0], [1, 0, 0]], dtype=bool)
    assert bursty_conforms(h, np.array([0, 1, 0], bool), 2, 4, 2)
    assert not bursty_conforms(h, np.array([1, 0, 0], bool), 2, 4, 2)  # burst of 3 > B
    assert not bursty_conforms(h, np.array([0, 1, 1], bool), 2, 4, 2)  # 3 distinct > lam
    h = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=bool)
    assert not bursty_conforms(h, np.array([1, 0, 0], bool), 2, 4, 2)  # round 0 in [r-W+1, r-B]
    h = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=bool)
    assert bursty_conforms(h, np.array([1, 0, 0], bool), 2, 4, 2)  # round 0 left the window
    assert bursty_conforms(np.zeros((0, 3), bool), np.ones(3, bool), 1, 2, 3)


def test_bursty_conforms_validates():
    with pytest.raises(ValueError, match="history"):
        bursty_conforms(np.zeros((2, 4), bool), np.zeros(3, bool), 1, 2, 1)
    with pytest.raises(ValueError, match="lam"):
        bursty_conforms(np.zeros((2, 3), bool), np.zeros(3, bool), 1, 2, 4)


def test_bursty_bursts_reach_length_B():
    B, W = 4, 8
    mask = BurstyDelay(B, W, lam=16, straggle_prob=0.5).pattern(400, 32, seed=7)
    lengths = set()
    for col in mask.T:
        padded = np.concatenate(([0], col.astype(int), [0]))
        edges = np.flatnonzero(np.diff(padded))
        lengths.update((edges[1::2] - edges[::2]).tolist())
    assert lengths == set(range(1, B + 1))


@settings(max_examples=60, deadline=None)
@given(params=bwl(), rounds=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       jitter=st.floats(0, 0.5), extra=st.floats(1e-3, 3))
def test_detection_recovers_bursty_pattern(params, rounds, seed, jitter, extra):
    B, W, lam, n = params
    model = BurstyDelay(B, W, lam, base=0.7, slowdown=2 * (1 + jitter) + extra, jitter=jitter)
    times = model.sample(rounds, n, seed)
    assert np.array_equal(detect_stragglers(times, mu=1.0), model.pattern(rounds, n, seed))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"B": 3, "W": 3, "lam": 1}, "B must satisfy 1 <= B < W, got B=3, W=3"),
        ({"B": 0, "W": 3, "lam": 1}, "B"),
        ({"B": 1.0, "W": 3, "lam": 1}, "B"),
        ({"B": 1, "W": 3, "lam": -1}, "lam"),
        ({"B": 1, "W": 3, "lam": 1, "base": 0}, "base"),
        ({"B": 1, "W": 3, "lam": 1, "straggle_prob": 1.5}, "straggle_prob"),
        ({"B": 1, "W": 3, "lam": 1, "jitter": -0.1}, "jitter"),
        ({"B": 1, "W": 3, "lam": 1, "slowdown": 2.1}, "slowdown"),
        ({"B": 1, "W": 3, "lam": 1, "slowdown": float("nan")}, "slowdown"),
    ],
)
def test_bursty_invalid_params(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BurstyDelay(**kwargs)


def test_bursty_lam_above_n_rejected():
    with pytest.raises(ValueError, match="lam must satisfy lam <= n, got lam=5, n=3"):
        BurstyDelay(1, 3, 5).sample(4, 3, seed=0)


# ---------------------------------------------------------------- detection


def test_detect_stragglers_rule():
    times = np.array([[1.0, 2.0, 2.01, 0.9], [3.0, 3.0, 3.0, 3.0]])
    expected = np.array([[False, True, True, False], [False] * 4])
    assert np.array_equal(detect_stragglers(times, mu=1.0), expected)
    assert np.array_equal(detect_stragglers(times, mu=0.0)[0], [True, True, True, False])
    with pytest.raises(ValueError, match="mu"):
        detect_stragglers(times, mu=-0.5)
    with pytest.raises(ValueError, match="times"):
        detect_stragglers(np.ones(3), mu=1.0)


# ---------------------------------------------------------------- Gilbert-Elliott


@pytest.mark.parametrize(("p_gb", "p_bg"), [(0.05, 0.5), (0.2, 0.1), (0.3, 0.3)])
def test_gilbert_elliott_long_run_bad_fraction(p_gb, p_bg):
    model = GilbertElliottDelay(p_good_to_bad=p_gb, p_bad_to_good=p_bg)
    pi = p_gb / (p_gb + p_bg)
    assert model.stationary_bad == pytest.approx(pi)
    bad = model.pattern(4000, 100, seed=3)
    assert bad.mean() == pytest.approx(pi, abs=0.01)
    assert bad[0].mean() == pytest.approx(pi, abs=0.15)  # starts stationary, 100 workers
    times = model.sample(4000, 100, seed=3)
    assert np.array_equal(times > model.base * (1 + model.jitter), bad)


def test_gilbert_elliott_is_bursty_in_time():
    bad = GilbertElliottDelay(p_good_to_bad=0.05, p_bad_to_good=0.2).pattern(3000, 50, seed=1)
    stay_bad = (bad[1:] & bad[:-1]).sum() / bad[:-1].sum()
    assert stay_bad == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"p_good_to_bad": -0.1}, "p_good_to_bad"),
        ({"p_bad_to_good": 1.2}, "p_bad_to_good"),
        ({"p_good_to_bad": 0, "p_bad_to_good": 0}, "p_good_to_bad"),
        ({"base": -1}, "base"),
        ({"slowdown": 1.0}, "slowdown"),
        ({"jitter": float("inf")}, "jitter"),
    ],
)
def test_gilbert_elliott_invalid_params(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GilbertElliottDelay(**kwargs)


# ---------------------------------------------------------------- iid models


def test_shifted_exponential_statistics():
    t = ShiftedExponentialDelay(shift=0.5, rate=4.0).sample(200, 500, seed=2)
    assert t.min() >= 0.5
    assert t.mean() == pytest.approx(0.5 + 1 / 4.0, abs=0.005)


def test_pareto_statistics():
    t = ParetoDelay(scale=2.0, alpha=3.0).sample(200, 500, seed=2)
    assert t.min() >= 2.0
    assert np.median(t) == pytest.approx(2.0 * 2 ** (1 / 3.0), rel=0.01)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (ShiftedExponentialDelay, {"shift": 0}, "shift"),
        (ShiftedExponentialDelay, {"rate": -2}, "rate"),
        (ParetoDelay, {"scale": 0}, "scale"),
        (ParetoDelay, {"alpha": "2"}, "alpha"),
    ],
)
def test_iid_invalid_params(cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


# ---------------------------------------------------------------- traces


def test_load_real_trace():
    times = load_trace(TRACE_FILE)
    assert times.shape == (30, 256) and times.dtype == np.float64
    assert np.all(times > 0)
    assert times[0, :3].tolist() == [0.7638, 0.6372, 0.6045]


def test_trace_delay_replays_prefix():
    model = TraceDelay(TRACE_FILE, time_scale=2.0)
    full = load_trace(TRACE_FILE)
    a = model.sample(10, 17, seed=1)
    assert np.array_equal(a, 2.0 * full[:10, :17])
    assert np.array_equal(a, model.sample(10, 17, seed=99))  # seed ignored
    a[0, 0] = -1.0  # a copy: the model is unaffected
    assert model.sample(1, 1)[0, 0] == 2.0 * full[0, 0]


@pytest.mark.parametrize(("rounds", "n"), [(31, 10), (10, 257)])
def test_trace_delay_too_small(rounds, n):
    with pytest.raises(TraceError, match=f"30 rounds x 256 workers, asked for {rounds} rounds x {n}"):
        TraceDelay(TRACE_FILE).sample(rounds, n)


def test_trace_delay_invalid_scale():
    with pytest.raises(ValueError, match="time_scale"):
        TraceDelay(TRACE_FILE, time_scale=0)


ROW = ",".join(["1.5"] * 4)
MALFORMED = [
    ("empty", "", "empty file"),
    ("blank", "\n  \n", "empty file"),
    ("non_numeric", f"{ROW}\n{ROW}\n1.5,1.5,abc,1.5\n", "line 3, column 3: 'abc' is not a number"),
    ("empty_cell", f"{ROW}\n1.5,,1.5,1.5\n", "line 2, column 2: '' is not a number"),
    ("underscore", "1_0,1.5,1.5,1.5\n", "line 1, column 1: '1_0' is not a number"),
    ("ragged_short", f"{ROW}\n{ROW}\n{ROW}\n1.5,1.5,1.5\n", "line 4 has 3 columns, expected 4"),
    ("ragged_long", f"{ROW}\n{ROW},1.5\n", "line 2 has 5 columns, expected 4"),
    ("nan", f"{ROW}\n1.5,nan,1.5,1.5\n", "line 2, column 2: 'nan' is not finite"),
    ("inf", f"{ROW}\n1.5,1.5,1.5,-inf\n", "line 2, column 4: '-inf' is not finite"),
    ("negative", f"{ROW}\n{ROW}\n1.5,-0.3,1.5,1.5\n", "line 3, column 2: time -0.3 is not > 0"),
    ("zero", "0,1.5,1.5,1.5\n", "line 1, column 1: time 0 is not > 0"),
    ("header", f"w0,w1,w2,w3\n{ROW}\n", "line 1, column 1: 'w0' is not a number; line 1 looks like a header"),
    ("blank_line", f"{ROW}\n\n{ROW}\n", "line 2 is empty"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_trace(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(TraceError):
        TraceDelay(path)


def test_trace_not_utf8(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"1.5,\xff\n")
    with pytest.raises(TraceError, match="not UTF-8"):
        load_trace(path)


def test_trace_tolerates_crlf_and_final_newline(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_bytes(b"1.5, 2\r\n3,4e-1")
    assert load_trace(path).tolist() == [[1.5, 2.0], [3.0, 0.4]]


# ---------------------------------------------------------------- factory


def test_make_delay_model_builds_every_model():
    params = {
        "bursty": {"B": 2, "W": 4, "lam": 3, "straggle_prob": 0.5},
        "gilbert_elliott": {"p_good_to_bad": 0.1},
        "shifted_exp": {"rate": 3.0},
        "pareto": {"alpha": 1.5},
        "trace": {"path": str(TRACE_FILE), "time_scale": 0.5},
    }
    assert set(params) == set(MODELS)
    for name, kwargs in params.items():
        model = make_delay_model(name, **kwargs)
        assert isinstance(model, MODELS[name])
        assert np.array_equal(model.sample(5, 4, seed=0), MODELS[name](**kwargs).sample(5, 4, seed=0))


def test_make_delay_model_errors():
    with pytest.raises(ValueError, match="unknown delay model 'weibull'; valid: bursty, gilbert_elliott"):
        make_delay_model("weibull")
    with pytest.raises(ValueError, match="unknown parameter 'foo' for model 'pareto'; valid: scale, alpha"):
        make_delay_model("pareto", foo=1)
    with pytest.raises(ValueError, match="unknown parameter 'times' for model 'trace'"):
        make_delay_model("trace", path=str(TRACE_FILE), times=None)
    with pytest.raises(ValueError, match="missing parameter 'lam' for model 'bursty'"):
        make_delay_model("bursty", B=1, W=2)
    with pytest.raises(ValueError, match="rate"):
        make_delay_model("shifted_exp", rate=0)
