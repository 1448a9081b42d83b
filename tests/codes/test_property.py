"""Property tests on large n: random conforming patterns always decode to the exact sum."""

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gcode.codes import make_scheme, srsgc_s
from gcode.sim.verify import TOLERANCE, verify

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(n=st.integers(8, 256), frac=st.floats(0.0, 0.3), code=st.sampled_from(["fr", "cyclic"]),
       seed=st.integers(0, 2**16))
def test_gc_decodes_exactly(n, frac, code, seed):
    s = int(frac * (n - 1))
    if code == "cyclic":
        n = min(n, 64)  # cyclic codes beyond that are covered by the n=256 tests below
        s = min(s, n - 1)
    report = verify(lambda: make_scheme("gc", n=n, jobs=3, s=s, gc_code=code), 2, seed, dim=8)
    assert report.failures == 0 and report.max_rel_error <= TOLERANCE


@FAST
@given(n=st.integers(6, 256), B=st.integers(1, 3), extra_w=st.integers(1, 4),
       lam_frac=st.floats(0.0, 0.5), seed=st.integers(0, 2**16))
def test_srsgc_decodes_exactly(n, B, extra_w, lam_frac, seed):
    W = B + extra_w
    lam = max(1, int(lam_frac * n))
    assume(srsgc_s(B, W, lam) < n)
    report = verify(lambda: make_scheme("srsgc", n=n, jobs=4, B=B, W=W, lam=lam, gc_code="fr"),
                    2, seed, dim=8)
    assert report.failures == 0 and report.max_rel_error <= TOLERANCE


@FAST
@given(n=st.integers(4, 40), B=st.integers(1, 3), extra_w=st.integers(1, 4),
       lam_frac=st.floats(0.0, 0.5), seed=st.integers(0, 2**16))
def test_srsgc_cyclic_extended_model_decodes_exactly(n, B, extra_w, lam_frac, seed):
    """SR-SGC's extended model (a round that decodes its own job is not counted later), with the
    cyclic code, whose finished sets must be exactly n−s or more."""
    W = B + extra_w
    lam = max(1, int(lam_frac * n))
    assume(srsgc_s(B, W, lam) < n)
    report = verify(lambda: make_scheme("srsgc", n=n, jobs=6, B=B, W=W, lam=lam, gc_code="cyclic"),
                    2, seed, dim=8)
    assert report.failures == 0 and report.max_rel_error <= TOLERANCE


@FAST
@given(n=st.integers(6, 256), B=st.integers(1, 3), extra_w=st.integers(1, 3),
       lam_frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_msgc_decodes_exactly(n, B, extra_w, lam_frac, seed):
    W = B + extra_w
    lam = max(1, int(lam_frac * n))
    report = verify(lambda: make_scheme("msgc", n=n, jobs=3, B=B, W=W, lam=lam, gc_code="fr"),
                    2, seed, dim=8)
    assert report.failures == 0 and report.max_rel_error <= TOLERANCE


def test_gc_n256_s27_cyclic_meets_fp32_precision():
    report = verify(lambda: make_scheme("gc", n=256, jobs=6, s=27), 3, 1)
    assert report.decoded_jobs == 18 and report.failures == 0
    assert report.max_rel_error <= 1e-6


def test_msgc_n256_paper_parameters_decode_exactly():
    report = verify(lambda: make_scheme("msgc", n=256, jobs=4, B=1, W=2, lam=27), 2, 2)
    assert report.failures == 0 and report.max_rel_error <= 1e-6


def test_srsgc_n256_paper_parameters_decode_exactly():
    report = verify(lambda: make_scheme("srsgc", n=256, jobs=4, B=2, W=3, lam=23), 2, 3)
    assert report.failures == 0 and report.max_rel_error <= 1e-6
    assert np.dtype(make_scheme("srsgc", n=256, B=2, W=3, lam=23).message_dtype) == np.float64
