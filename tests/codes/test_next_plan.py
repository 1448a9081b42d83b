"""The invariant behind dispatch at arrival: for a scheme with ``plans_from_own_arrivals``, the
round-(r+1) tasks of a worker that arrived in round r are ``next_plan_if_all_arrive(r)[w]``,
whoever else arrives and whenever the decodes run; and asking leaves the scheme untouched."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gcode.codes import make_scheme

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _scheme(kind: str, n: int, B: int, extra_w: int, lam: int):
    if kind == "uncoded":
        return make_scheme("uncoded", n=n, jobs=6)
    if kind == "ignore":
        return make_scheme("ignore", n=n, jobs=6, s=min(lam, n - 1))
    if kind == "gc":
        return make_scheme("gc", n=n, jobs=6, s=min(lam, n - 1), gc_code="fr")
    return make_scheme("msgc", n=n, jobs=6, B=B, W=B + extra_w, lam=min(lam, n),
                       gc_code="cyclic")


@FAST
@given(kind=st.sampled_from(["uncoded", "ignore", "gc", "msgc"]), n=st.integers(2, 16),
       B=st.integers(1, 3), extra_w=st.integers(1, 3), lam=st.integers(1, 6),
       p=st.floats(0.0, 0.6), decode_first=st.booleans(), seed=st.integers(0, 2**16))
def test_arrived_workers_next_tasks_are_known_at_arrival(kind, n, B, extra_w, lam, p,
                                                         decode_first, seed):
    rng = np.random.default_rng(seed)
    scheme = _scheme(kind, n, B, extra_w, lam)
    assert scheme.plans_from_own_arrivals
    for r in range(scheme.total_rounds - 1):
        scheme.plan(r)
        events, history = list(scheme.events), len(scheme.history)
        ahead = scheme.next_plan_if_all_arrive(r)
        assert scheme.events == events and len(scheme.history) == history  # untouched
        arrived = rng.random(n) >= p
        if not scheme.conforms(r, ~arrived):
            arrived[:] = True  # a violation is waited out and recorded straggler-free
        scheme.record(r, arrived)
        decodes = [t for t in range(r - scheme.delay, r + 1) if scheme.decodable(t)]
        if decode_first:  # the coordinator's order without pipelining; with it, plan first
            for t in decodes:
                scheme.decode(t)
        actual = scheme.plan(r + 1)
        for w in np.flatnonzero(arrived):
            assert actual[w] == ahead[w], (r, int(w))
        if not decode_first:
            for t in decodes:
                scheme.decode(t)


def test_schemes_without_the_invariant_do_not_claim_it():
    srsgc = make_scheme("srsgc", n=8, jobs=4, B=1, W=2, lam=2, gc_code="fr")
    assert not srsgc.plans_from_own_arrivals
    with pytest.raises(NotImplementedError, match="cannot fork"):
        srsgc.next_plan_if_all_arrive(0)
