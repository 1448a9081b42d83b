"""Every straggler pattern a scheme's model allows decodes exactly (small n, exhaustive), and
one less redundancy breaks some pattern (the parameters are tight)."""

import copy
import itertools

import numpy as np
import pytest

from gcode.codes import GradientCoding, MultiplexedSGC, SelectiveRepeatSGC, make_gc_code, make_scheme
from gcode.sim.verify import TOLERANCE, run_pattern


def conforming_patterns(make):
    """All sequences of straggler masks that a fresh ``make()`` scheme accepts, round by round.

    The scheme itself answers ``conforms``, so a model that depends on the scheme's plans (SR-SGC
    leaves a round that decodes its own job out of later checks) is enumerated as the scheme
    applies it. Each branch drives a copy of the scheme, decoding what is decodable.
    """
    probe = make()
    n, rounds = probe.n, probe.total_rounds
    subsets = [np.array([w in c for w in range(n)]) for k in range(n + 1)
               for c in itertools.combinations(range(n), k)]

    def extend(scheme, pattern):
        r = len(pattern)
        if r == rounds:
            yield list(pattern)
            return
        scheme.plan(r)
        for mask in subsets:
            if not scheme.conforms(r, mask):
                continue
            branch = copy.deepcopy(scheme)
            branch.record(r, ~mask)
            for t in range(max(0, r - branch.delay), r + 1):
                if branch.decodable(t):
                    branch.decode(t)
            pattern.append(mask)
            yield from extend(branch, pattern)
            pattern.pop()

    yield from extend(probe, [])


def check_all(make, limit=20000):
    """Run every conforming pattern; returns (patterns, failing patterns, worst error)."""
    rng = np.random.default_rng(0)
    count, failing, worst = 0, 0, 0.0
    for pattern in conforming_patterns(make):
        scheme = make()
        _decoded, failures, error = run_pattern(scheme, rng, 4, lambda s, r: pattern[r])
        count += 1
        failing += failures > 0
        worst = max(worst, error)
        assert count <= limit, "pattern space larger than the test budget"
    return count, failing, worst


CASES = [
    ("gc", 4, dict(s=1)), ("gc", 4, dict(s=2)), ("gc", 5, dict(s=2, gc_code="fr")),
    ("uncoded", 3, {}),
    ("srsgc", 4, dict(B=2, W=3, lam=2)), ("srsgc", 4, dict(B=1, W=2, lam=2)),
    ("srsgc", 3, dict(B=1, W=3, lam=2)), ("srsgc", 4, dict(B=2, W=4, lam=2)),
    pytest.param("msgc", 4, dict(B=2, W=3, lam=2), marks=pytest.mark.slow),
    ("msgc", 4, dict(B=1, W=2, lam=2)),
    ("msgc", 3, dict(B=1, W=3, lam=2)), ("msgc", 3, dict(B=2, W=3, lam=3)),
    ("msgc", 3, dict(B=1, W=2, lam=1, gc_code="fr")),
]


@pytest.mark.parametrize("name,n,params", CASES)
def test_every_conforming_pattern_decodes_exactly(name, n, params):
    jobs = 2
    count, failing, worst = check_all(lambda: make_scheme(name, n=n, jobs=jobs, **params))
    assert count > (1 if name != "uncoded" else 0)
    assert failing == 0
    assert worst <= TOLERANCE


TIGHT = [
    ("gc s=2 with an s=1 code", 4,
     lambda: GradientCoding(4, 2, jobs=1, code=make_gc_code("cyclic", 4, 1))),
    ("srsgc (2,3,2) with s-1", 4, lambda: SelectiveRepeatSGC(4, 2, 3, 2, jobs=3, s=0)),
    ("srsgc (1,2,2) with s-1", 4, lambda: SelectiveRepeatSGC(4, 1, 2, 2, jobs=2, s=0)),
    ("msgc (2,3,2) with a lam-1 D2 code", 4, lambda: MultiplexedSGC(4, 2, 3, 2, jobs=1, code_s=1)),
    ("msgc (1,2,2) with a lam-1 D2 code", 4, lambda: MultiplexedSGC(4, 1, 2, 2, jobs=1, code_s=1)),
]


@pytest.mark.parametrize("label,n,make", TIGHT, ids=[t[0] for t in TIGHT])
def test_one_less_redundancy_fails_some_pattern(label, n, make):
    count, failing, _ = check_all(make)
    assert failing > 0, f"{label}: all {count} patterns decoded; the redundancy is not tight"


#: SR-SGC over more jobs: every pattern of its extended model, in which a round that decoded
#: its own job (every worker on that job, at most s stragglers) is left out of later checks
EXTENDED = [(4, dict(B=1, W=2, lam=2), 3, "cyclic"), (3, dict(B=1, W=3, lam=2), 4, "cyclic"),
            (3, dict(B=1, W=2, lam=2), 3, "fr"), (4, dict(B=2, W=3, lam=2), 2, "fr")]


@pytest.mark.parametrize("n,params,jobs,code", EXTENDED)
def test_srsgc_extended_model_decodes_every_pattern(n, params, jobs, code):
    make = lambda: make_scheme("srsgc", n=n, jobs=jobs, gc_code=code, **params)
    plain = make().model
    beyond = sum(not all(plain.conforms(p[:r], p[r]) for r in range(len(p)))
                 for p in conforming_patterns(make))
    assert beyond > 0, "the extended rule admitted no pattern beyond the (B, W, λ) model"
    _count, failing, worst = check_all(make)
    assert failing == 0 and worst <= TOLERANCE
