"""Every straggler pattern a scheme's model allows decodes exactly (small n, exhaustive), and
one less redundancy breaks some pattern (the parameters are tight)."""

import itertools

import numpy as np
import pytest

from gcode.codes import GradientCoding, MultiplexedSGC, SelectiveRepeatSGC, make_gc_code, make_scheme
from gcode.sim.verify import TOLERANCE, run_pattern


def conforming_patterns(model, n, rounds):
    """All sequences of straggler masks over ``rounds`` rounds that conform to ``model``."""
    subsets = [np.array([w in c for w in range(n)]) for k in range(n + 1)
               for c in itertools.combinations(range(n), k)]

    def extend(history):
        if len(history) == rounds:
            yield list(history)
            return
        for mask in subsets:
            if model.conforms(history, mask):
                history.append(mask)
                yield from extend(history)
                history.pop()

    yield from extend([])


def check_all(make, limit=20000):
    """Run every conforming pattern; returns (patterns, failing patterns, worst error)."""
    probe = make()
    rng = np.random.default_rng(0)
    count, failing, worst = 0, 0, 0.0
    for pattern in conforming_patterns(probe.model, probe.n, probe.total_rounds):
        scheme = make()
        decoded, failures, error = run_pattern(scheme, rng, 4, lambda s, r: pattern[r])
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
    ("msgc", 4, dict(B=2, W=3, lam=2)), ("msgc", 4, dict(B=1, W=2, lam=2)),
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
