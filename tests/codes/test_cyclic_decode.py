"""Cyclic decode vectors from the left null space are exact: every decode set on small n, random
sets by hypothesis on n beyond the dense limit, and a coded run under `verify`."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from gcode.codes import CyclicRepetitionCode, DecodeError, make_scheme
from gcode.codes.cyclic_solve import band_product
from gcode.sim.verify import TOLERANCE, verify


def _decode_set(n, stragglers):
    workers = np.ones(n, dtype=bool)
    workers[list(stragglers)] = False
    return np.flatnonzero(workers)


@pytest.mark.parametrize("n,s", [(5, 1), (7, 2), (9, 4), (10, 3), (12, 5)])
def test_every_decode_set_of_small_codes_matches_the_dense_solve(n, s):
    code = CyclicRepetitionCode(n, s)  # n <= DENSE_DECODE_MAX_N: the dense QR
    accepted = 0
    for stragglers in itertools.combinations(range(n), s):
        workers = _decode_set(n, stragglers)
        dense = code._solve_dense(workers)
        try:
            null_space = code._solve_null_space(workers)
        except DecodeError:  # not accurate enough: decode_vector takes the banded LU instead
            np.testing.assert_allclose(code._solve_band(workers), dense, rtol=1e-8, atol=1e-9)
            continue
        accepted += 1
        np.testing.assert_allclose(null_space, dense, rtol=1e-8, atol=1e-9)
        rows = code.encoding[workers]
        mass = np.abs(null_space) @ np.abs(rows).max(axis=1)  # the code's own residual scale
        assert np.abs(null_space @ rows - 1.0).max() <= 1e-10 * max(1.0, mass)
    assert accepted > 0


def _accepted_code(n, s_frac):
    """s = max(1, ⌊s_frac·n⌋) and the cyclic code (n, s); an example whose code the constructor
    refuses (no decode within the error budget even from every worker) is rejected."""
    s = max(1, int(s_frac * n))
    try:
        return s, CyclicRepetitionCode(n, s)
    except ValueError:
        reject()


FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(n=st.integers(257, 700), s_frac=st.floats(0.0, 0.1), seed=st.integers(0, 2**16))
@example(n=624, s_frac=0.015625, seed=1961)  # the first n - s arrivals miss: least norm over all
def test_decoded_sums_are_exact_beyond_the_dense_limit(n, s_frac, seed):
    s, code = _accepted_code(n, s_frac)
    rng = np.random.default_rng(seed)
    arrived = np.ones(n, dtype=bool)
    arrived[rng.choice(n, int(rng.integers(0, s + 1)), replace=False)] = False
    try:
        workers, a = code.decode_vector(arrived)  # null space, or banded LU when not accurate
    except DecodeError:  # over the error budget: the set is refused and a scheme waits for more,
        arrived[:] = True  # down to every worker, which the constructor proved decodes
        workers, a = code.decode_vector(arrived)
    # the first n - s arrivals, or every arrival (least norm) when those decode over the budget
    assert code._null_space is not None and arrived[workers].all()
    assert len(workers) == n - s or len(workers) == np.count_nonzero(arrived)
    parts = rng.standard_normal((n, 3)).astype(np.float32).astype(np.float64)  # fp32 partial gradients
    def messages_of(ws):
        return np.stack([band_product(code.band, np.eye(1, n, w)[0]) for w in ws]) @ parts

    decoded = a @ messages_of(workers)
    truth = parts.sum(axis=0)
    first = np.flatnonzero(arrived)[:n - s]
    banded = code._solve_band(first)  # the reference decode, from the first n - s arrivals
    floor = np.abs(banded @ messages_of(first) - truth).max() / np.abs(truth).max()
    assert np.abs(decoded - truth).max() / np.abs(truth).max() <= max(10 * floor, 1e-9)


def test_a_coded_run_beyond_the_dense_limit_decodes_exactly():
    for name, params in [("gc", {"s": 20}), ("msgc", {"B": 1, "W": 2, "lam": 12}),
                         ("srsgc", {"B": 1, "W": 2, "lam": 24})]:
        report = verify(lambda: make_scheme(name, n=400, jobs=4, **params), patterns=2, seed=3, dim=8)
        assert report.failures == 0 and report.max_rel_error <= TOLERANCE, name


def test_task_tuples_are_each_workers_row():
    code = CyclicRepetitionCode(300, 7)
    for w in range(code.n):
        parts, coefficients = code.row(w)
        assert code.row_tuples(w, 1000) == (tuple((parts + 1000).tolist()), tuple(coefficients.tolist()))
        assert parts.tolist() == sorted(((w + np.arange(8)) % 300).tolist())
        assert coefficients.tolist() == code.encoding[w, parts].tolist()
    assert code.row_tuples(5) is code.row_tuples(5)  # built once


@FAST
@given(n=st.integers(CyclicRepetitionCode.DENSE_DECODE_MAX_N + 1, 700), s_frac=st.floats(0.0, 0.1),
       seed=st.integers(0, 2**16))
def test_a_kept_null_space_vector_is_within_the_messages_rounding(n, s_frac, seed):
    """Beyond the dense limit a refined null-space vector is kept only when Σ a_i·B_i is within
    1e-11 of 1, or within u·Σ_i |a_i|·Σ_j |B_ij| (the rounding that fp64 messages carry); then it
    decodes the same sum as the banded LU's vector (and, up to n = 256, the dense QR's)."""
    s, code = _accepted_code(n, s_frac)
    rng = np.random.default_rng(seed)
    workers = _decode_set(n, rng.choice(n, s, replace=False))
    try:
        a = code._solve_null_space(workers)
    except DecodeError:  # not within that bound: decode_vector takes the banded LU
        reject()
    full = np.bincount(workers, a, minlength=n)
    residual = np.abs(band_product(code.band, full) - 1.0).max()
    assert residual <= max(1e-11, np.finfo(np.float64).eps * (np.abs(full) @ np.abs(code.band).sum(axis=1)))
    parts = rng.standard_normal((n, 3))
    messages = np.stack([band_product(code.band, np.eye(1, n, w)[0]) for w in workers]) @ parts
    truth = parts.sum(axis=0)
    references = [code._solve_band(workers)] + ([code._solve_dense(workers)] if n <= 256 else [])
    for reference in references:
        floor = np.abs(reference @ messages - truth).max() / np.abs(truth).max()
        assert np.abs(a @ messages - truth).max() / np.abs(truth).max() <= max(10 * floor, 1e-9)


def test_refinement_settles_where_the_unrefined_vector_is_not_accurate():
    """On an ill-conditioned code (n = 300, s = 20) the unrefined null-space vector misses 1 by
    more than 1e-11; refinement brings the residual down to its rounding floor, u·Σ_i |a_i|·Σ_j |B_ij|
    (the error of computing Σ a_i·B_i at all), where the banded LU's lies too."""
    from gcode.codes.cyclic_solve import NullSpaceDecoder
    code = CyclicRepetitionCode(300, 20)
    decoder = NullSpaceDecoder(code.band)
    row_mass = np.abs(code.band).sum(axis=1)
    rng = np.random.default_rng(0)
    refined = 0
    for _ in range(10):
        workers = _decode_set(300, rng.choice(300, 20, replace=False))
        unrefined, _, _ = decoder.solve(workers, enough=np.inf)
        a, product, settled = decoder.solve(workers, enough=1e-11)
        assert np.array_equal(product, band_product(code.band, a))
        assert not a[np.setdiff1d(np.arange(300), workers)].any()
        if np.abs(band_product(code.band, unrefined) - 1.0).max() > 1e-11:
            refined += 1
            assert settled
            floor = np.finfo(np.float64).eps * (np.abs(a) @ row_mass)
            assert np.abs(product - 1.0).max() <= 4 * floor
    assert refined > 0
