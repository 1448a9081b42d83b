"""Acceptance of exact decoding at every small n: `gcode verify` passes with zero failures and
max_rel_error <= 1e-6 for n = 3 … 12, every s, cyclic and FR codes, and for SR-SGC and M-SGC with
(B, W) pairs that include B ∤ W−1. Cyclic codes are certified over every decode set."""

import itertools
import json
import math

import numpy as np
import pytest
from hostile_helpers import gcode_in_process

from gcode.codes import GradientCoding, make_gc_code, make_scheme, srsgc_s
from gcode.codes.cyclic import CERTIFY_MAX_DECODE_SETS, CyclicRepetitionCode
from gcode.codes.exactness import DECODE_ERROR_BUDGET, error_factor, residual_and_amplification
from gcode.sim.verify import TOLERANCE, verify

NS = range(3, 13)
#: (B, W) pairs, including (2, 4) and (3, 5), where B does not divide W−1
PAIRS = [(1, 2), (2, 3), (1, 3), (2, 4), (3, 5), (3, 4)]


@pytest.mark.parametrize("n", NS)
def test_gc_every_s_both_codes(n):
    for s, code in itertools.product(range(n), ("cyclic", "fr")):
        report = verify(lambda: make_scheme("gc", n=n, jobs=5, s=s, gc_code=code), 4, 100 * n + s)
        assert report.failures == 0 and report.max_rel_error <= TOLERANCE, (n, s, code, report)


@pytest.mark.parametrize("n", NS)
def test_sequential_codes_at_small_n(n):
    for (B, W), name, code in itertools.product(PAIRS, ("srsgc", "msgc"), ("cyclic", "fr")):
        for lam in sorted({1, n // 2, n - 1, n}):
            if name == "srsgc" and srsgc_s(B, W, lam) >= n:
                continue
            report = verify(lambda: make_scheme(name, n=n, jobs=4, B=B, W=W, lam=lam, gc_code=code),
                            2, 7 * n + lam)
            assert report.failures == 0 and report.max_rel_error <= TOLERANCE, \
                (name, n, B, W, lam, code, report)


@pytest.mark.parametrize("args", [
    ["gc", "--n", "7", "--s", "4"], ["gc", "--n", "9", "--s", "5"], ["gc", "--n", "8", "--s", "3"],
    ["msgc", "--n", "7", "--B", "5", "--W", "6", "--lam", "4"],
    ["srsgc", "--n", "8", "--B", "2", "--W", "3", "--lam", "8"],
    ["srsgc", "--n", "12", "--B", "2", "--W", "4", "--lam", "7", "--gc-code", "fr"],
])
def test_cli_verify_cases_that_used_to_fail(args):
    proc = gcode_in_process("verify", "--scheme", *args, "--rounds", "12", "--patterns", "8", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["failures"] == 0 and out["max_rel_error"] <= 1e-6


def test_cyclic_certificate_is_the_worst_over_every_decode_set():
    code = CyclicRepetitionCode(7, 4)
    worst = np.zeros(2)
    for I in itertools.combinations(range(7), 3):
        coefficients = code.decode_coefficients(frozenset(I))
        workers = np.array(sorted(coefficients))
        worst = np.maximum(worst, residual_and_amplification(
            code.encoding[workers], np.array([coefficients[w] for w in workers.tolist()])))
    assert (code.residual, code.amplification) == pytest.approx(tuple(worst))
    assert code.amplification > 600  # a sample of 9 sets saw 7.8 here
    assert code.certified and code.message_dtype == np.float64  # fp32 would miss the budget
    assert error_factor(code.residual, code.amplification, np.float32) > DECODE_ERROR_BUDGET
    small = make_gc_code("cyclic", 5, 4)  # certified well-conditioned
    assert small.certified and small.message_dtype == np.float32
    bound = error_factor(small.residual, small.amplification, np.float32)
    assert small.error_bound == bound <= DECODE_ERROR_BUDGET


def test_a_code_too_large_to_certify_sends_fp64_and_checks_each_set():
    assert math.comb(40, 6) > CERTIFY_MAX_DECODE_SETS
    code = make_gc_code("cyclic", 40, 6)
    assert not code.certified and code.message_dtype == np.float64
    assert code.error_bound == DECODE_ERROR_BUDGET


def test_an_encoding_that_cannot_tolerate_s_is_refused():
    with pytest.raises(ValueError, match="does not tolerate s=1"):
        CyclicRepetitionCode(3, 1, encoding=np.eye(3))


class _DecodesFromEveryone(GradientCoding):
    """A broken GC that decodes from the first n−s workers, arrived or not."""

    def _decodable(self, t):
        return True

    def _decode(self, t):
        from gcode.codes import ResultKey
        coefficients = self.code.decode_coefficients(frozenset(range(self.n)))
        return [(ResultKey(w, t, 0), c) for w, c in sorted(coefficients.items())]


def test_verify_catches_a_decode_that_uses_a_straggler():
    report = verify(lambda: _DecodesFromEveryone(6, 2, jobs=6, gc_code="fr"), 6, 0)
    assert report.failures > 0 and report.max_rel_error == math.inf
