"""Scheme checkpoints as plain JSON: the scheme's spec plus its event log.

A scheme is a deterministic state machine, so the calls that changed it (record, accept_late,
decode, switch) rebuild its full state when replayed on a fresh instance: pending jobs, received
results, straggler history and switches. No pickle is involved, and a malformed state is
rejected with a message that names the problem.
"""

from __future__ import annotations

import numpy as np

STATE_FORMAT = 1


def scheme_state(scheme) -> dict:
    return {"format": STATE_FORMAT, "spec": scheme.spec, "events": [list(e) for e in scheme.events]}


def _build(spec: dict):
    from . import make_scheme
    from .switching import SwitchingScheme
    if not isinstance(spec, dict) or "name" not in spec or "n" not in spec:
        raise ValueError("scheme state: 'spec' must be an object with 'name' and 'n'")
    if spec["name"] == "auto":
        first = _build({**spec["first"], "n": spec["n"], "jobs": spec.get("jobs")})
        return SwitchingScheme(spec["n"], spec.get("jobs"), first)
    return make_scheme(spec["name"], n=spec["n"], jobs=spec.get("jobs"), **spec.get("params", {}))


def _arrival_mask(bits, n: int) -> np.ndarray:
    """A record event's '0'/'1' string as a bool mask of length n."""
    codes = np.frombuffer(bits.encode("ascii", "replace"), dtype=np.uint8) if isinstance(bits, str) else None
    if codes is None or len(codes) != n or not np.isin(codes, (48, 49)).all():
        raise ValueError(f"arrival mask must be {n} characters of 0/1")
    return codes == 49


def restore_scheme(state: dict, jobs: int | None = None):
    """A scheme in exactly the state ``scheme_state`` captured; ``jobs`` (at least the saved
    spec's) extends its run to that many jobs: the events replayed must then be those of rounds
    before the saved run's last job ended (an extended run continues from round ``jobs``)."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"scheme state: unsupported or missing format (expected {STATE_FORMAT})")
    spec = state.get("spec")
    if jobs is not None and isinstance(spec, dict):
        spec = {**spec, "jobs": jobs}
    scheme = _build(spec)
    from . import make_scheme
    for i, event in enumerate(state.get("events", [])):
        try:
            kind = event[0]
            if kind == "record":
                r = int(event[1])
                scheme.plan(r)
                scheme.record(r, _arrival_mask(event[2], scheme.n))
            elif kind == "late":
                scheme.accept_late(int(event[1]), int(event[2]))
            elif kind == "decode":
                scheme.decode(int(event[1]))
            elif kind == "switch":
                spec = event[2]
                scheme.switch(int(event[1]), lambda jobs, spec=spec: make_scheme(
                    spec["name"], n=scheme.n, jobs=jobs, **spec.get("params", {})))
            else:
                raise ValueError(f"unknown event kind {kind!r}")
        except (IndexError, TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"scheme state: event {i} {event!r} is invalid: {exc}") from exc
    return scheme
