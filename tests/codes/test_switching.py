"""Switching schemes at job boundaries never mis-decodes (random switches, random conforming
straggler patterns, including the partial-wait policy on random times)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcode.codes import make_scheme
from gcode.codes.switching import SwitchingScheme
from gcode.sim import PartialWaitPolicy
from gcode.sim.verify import TOLERANCE, random_conforming_stragglers

CHOICES = [("uncoded", {}), ("gc", dict(s=2)), ("gc", dict(s=1, gc_code="fr")),
           ("srsgc", dict(B=1, W=3, lam=2)), ("srsgc", dict(B=2, W=3, lam=3)),
           ("msgc", dict(B=1, W=2, lam=2)), ("msgc", dict(B=2, W=3, lam=3, gc_code="fr")),
           ("msgc", dict(B=1, W=3, lam=6))]


def drive(scheme, switches, stragglers_for, rng, dim=6):
    """Run every round, switching at the given rounds; returns (decoded, max error)."""
    grads, results, decoded, worst = {}, {}, 0, 0.0

    def grads_of(job):
        if job not in grads:
            grads[job] = rng.standard_normal((len(scheme.chunk_fractions_for(job)), dim)).astype(np.float32)
        return grads[job]

    r = 0
    while r < scheme.total_rounds:
        if r in switches and scheme.can_switch(r):
            name, params = switches[r]
            scheme.switch(r, lambda jobs: make_scheme(name, n=scheme.n, jobs=jobs, **params))
        plan = scheme.plan(r)
        for worker, tasks in enumerate(plan):
            for task in tasks:
                parts = grads_of(task.job)[list(task.chunks)].astype(np.float64)
                message = np.asarray(task.coefficients) @ parts
                key = (worker, r, task.slot)
                assert key not in results, "result keys must be unique"
                results[key] = message.astype(scheme.message_dtype)
        scheme.record(r, ~stragglers_for(scheme, r))
        for t in range(max(0, r - scheme.delay), r + 1):
            if scheme.decodable(t):
                estimate = sum(c * results[tuple(k)].astype(np.float64) for k, c in scheme.decode(t))
                truth = grads_of(t).astype(np.float64).sum(axis=0)
                worst = max(worst, float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth)))
                decoded += 1
            elif scheme.job_exists(t) and scheme.decode_deadline(t) == r and not scheme.is_decoded(t):
                pytest.fail(f"job {t} missed its deadline after switches {scheme.switches}")
        r += 1
    return decoded, worst


@settings(max_examples=60, deadline=None)
@given(n=st.integers(7, 12), jobs=st.integers(3, 14), seed=st.integers(0, 2**16),
       first=st.sampled_from(range(len(CHOICES))),
       switches=st.dictionaries(st.integers(0, 14), st.sampled_from(range(len(CHOICES))), max_size=5))
def test_random_switches_decode_every_job_exactly(n, jobs, seed, first, switches):
    rng = np.random.default_rng(seed)
    name, params = CHOICES[first]
    scheme = SwitchingScheme(n, jobs, make_scheme(name, n=n, **params))
    plan = {r: CHOICES[i] for r, i in switches.items()}
    decoded, worst = drive(scheme, plan, lambda s, r: random_conforming_stragglers(s, r, rng), rng)
    assert decoded == jobs and worst <= TOLERANCE


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), mu=st.floats(0.1, 1.0),
       switches=st.dictionaries(st.integers(0, 10), st.sampled_from(range(len(CHOICES))), max_size=4))
def test_switches_under_the_partial_policy(seed, mu, switches):
    rng = np.random.default_rng(seed)
    n, jobs = 10, 10
    scheme = SwitchingScheme(n, jobs, make_scheme("gc", n=n, s=2))
    times = 1 + rng.random((40, n)) + (rng.random((40, n)) < 0.25) * 4
    policy = PartialWaitPolicy(mu)

    def stragglers(s, r):
        return ~policy.resolve(times[r], lambda missing: s.conforms(r, missing)).arrived

    decoded, worst = drive(scheme, {r: CHOICES[i] for r, i in switches.items()}, stragglers, rng)
    assert decoded == jobs and worst <= TOLERANCE


def test_switch_bookkeeping():
    scheme = SwitchingScheme(6, 8, make_scheme("msgc", n=6, B=1, W=3, lam=2))
    for r in range(3):
        scheme.plan(r)
        scheme.record(r, np.ones(6, bool))
        for t in range(r + 1):
            if scheme.decodable(t):
                scheme.decode(t)
    new = scheme.switch(3, lambda jobs: make_scheme("gc", n=6, jobs=jobs, s=1))
    assert new.jobs == 5 and scheme.segments[0].scheme.jobs == 3
    assert not scheme.can_switch(4) or not scheme.segments[0].active(4)
    plan = scheme.plan(3)
    assert {t.job for t in plan[0]} >= {1, 2, 3}  # drains jobs 1, 2 while issuing job 3
    assert scheme.round_load(3) == pytest.approx(scheme.segments[0].scheme.load + new.load)
    with pytest.raises(ValueError, match="still draining"):
        scheme.record(3, np.ones(6, bool))
        scheme.switch(4, lambda jobs: make_scheme("uncoded", n=6, jobs=jobs))
    assert scheme.total_rounds == 8
