"""Scheme checkpoints: restoring the event log gives the same plans and decodings."""

import json

import numpy as np
import pytest

from gcode.codes import make_scheme
from gcode.codes.state import restore_scheme, scheme_state
from gcode.codes.switching import SwitchingScheme
from gcode.sim.verify import random_conforming_stragglers


def drive(scheme, rounds, rng, switch_at=None):
    for r in range(rounds):
        if switch_at == r:
            scheme.switch(r, lambda jobs: make_scheme("gc", n=scheme.n, jobs=jobs, s=2))
        scheme.plan(r)
        stragglers = random_conforming_stragglers(scheme, r, rng)
        scheme.record(r, ~stragglers)
        if r and stragglers.any():
            scheme.accept_late(r, int(np.flatnonzero(stragglers)[0]))
        for t in range(max(0, r - scheme.delay), r + 1):
            if scheme.decodable(t):
                scheme.decode(t)


@pytest.mark.parametrize("name,params", [("gc", dict(s=2)), ("srsgc", dict(B=2, W=3, lam=3)),
                                         ("msgc", dict(B=2, W=3, lam=3)), ("auto", {})])
def test_restore_continues_identically(name, params):
    rng = np.random.default_rng(3)
    make = (lambda: SwitchingScheme(8, 12, make_scheme("msgc", n=8, B=1, W=2, lam=2))) if name == "auto" \
        else (lambda: make_scheme(name, n=8, jobs=12, **params))
    original = make()
    drive(original, 6, rng, switch_at=3 if name == "auto" else None)
    state = json.loads(json.dumps(scheme_state(original)))  # survives JSON
    restored = restore_scheme(state)
    assert len(restored.history) == 6
    for r in range(6, original.total_rounds):
        assert restored.plan(r) == original.plan(r)
        arrived = np.ones(8, bool)
        arrived[r % 8] = False
        if original.conforms(r, ~arrived):
            original.record(r, arrived)
            restored.record(r, arrived)
        else:
            original.record(r, np.ones(8, bool))
            restored.record(r, np.ones(8, bool))
        for t in range(max(0, r - original.delay), r + 1):
            assert original.decodable(t) == restored.decodable(t)
            if original.decodable(t):
                assert original.decode(t) == restored.decode(t)


@pytest.mark.parametrize("state,message", [
    ({}, "unsupported or missing format"),
    ({"format": 1, "spec": "x"}, "'spec' must be an object"),
    ({"format": 1, "spec": {"name": "gc", "n": 4, "params": {"s": 9}}}, "s must satisfy"),
    ({"format": 1, "spec": {"name": "gc", "n": 4, "params": {"s": 1}}, "events": [["record", 0, "10"]]},
     "4 characters of 0/1"),
    ({"format": 1, "spec": {"name": "gc", "n": 4, "params": {"s": 1}}, "events": [["jump", 0]]},
     "unknown event kind"),
    ({"format": 1, "spec": {"name": "gc", "n": 4, "params": {"s": 1}}, "events": [["record", 5, "1111"]]},
     "next round is 0"),
])
def test_malformed_state_is_rejected_by_name(state, message):
    with pytest.raises(ValueError, match=message):
        restore_scheme(state)
