"""A scheme that changes its coding scheme at job boundaries without ever mis-decoding.

Switching protocol (switch at round r, the next round to plan):
  1. The running segment is truncated to the jobs it has already issued (jobs < r). It keeps
     running its own plan for those jobs until each is decoded (at most its delay T more rounds):
     it *drains*.
  2. The new segment issues job r onwards. Job numbers, rounds and data are global; each segment
     sees its own local job and round numbers, starting at 0.
  3. While both run, a worker's round holds both segments' tasks (slots of the newer segment are
     offset by ``SLOT_STRIDE``), and a straggler set must conform to *both* models. A set that
     does not is waited out by the round-ending policy, so each segment only ever records
     conforming history: each segment's own decoding invariant holds, hence no job mis-decodes.
  4. A switch is refused while a previous segment is still draining (at most two run at once).

Decode deadline: job t of a segment with delay T decodes by round t + T.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .base import Scheme, mask_text
from .plan import Decoding, Plan

SLOT_STRIDE = 1000


@dataclass
class Segment:
    scheme: Scheme
    start: int  # first global job == first global round of this segment
    slot_offset: int

    def active(self, r: int) -> bool:
        local = r - self.start
        return local >= 0 and (self.scheme.jobs is None or local < self.scheme.total_rounds)

    def owns(self, t: int) -> bool:
        return self.scheme.job_exists(t - self.start)


class SwitchingScheme:
    """The scheme protocol (plan, conforms, record, accept_late, decodable, decode) over a
    sequence of segments; see the module docstring for the switching protocol."""

    name = "auto"
    #: a switch recorded in round r may change every worker's round-(r+1) tasks
    plans_from_own_arrivals = False

    def __init__(self, n: int, jobs: int | None, first: Scheme):
        if first.n != n:
            raise ValueError(f"first segment has n={first.n}, expected n={n}")
        self.n, self.jobs = n, jobs
        first.jobs = jobs
        self.segments: list[Segment] = [Segment(first, 0, 0)]
        self.history: list[np.ndarray] = []
        self.switches: list[dict] = []
        self.first_spec = first.spec
        self.events: list[list] = []
        self._max_delay = first.delay

    # ---- switching --------------------------------------------------------------------------
    @property
    def current(self) -> Scheme:
        return self.segments[-1].scheme

    def can_switch(self, r: int) -> bool:
        """True when no earlier segment is still draining and jobs remain to be issued."""
        draining = any(seg.active(r) for seg in self.segments[-2:-1])
        return not draining and (self.jobs is None or r < self.jobs)

    def switch(self, r: int, make: Callable[[int | None], Scheme]) -> Scheme:
        """From round r on, issue new jobs with ``make(remaining_jobs)``; returns the new scheme."""
        if r != len(self.history):
            raise ValueError(f"switch at round {r}, but the next round is {len(self.history)}")
        if not self.can_switch(r):
            raise ValueError(f"cannot switch at round {r}: a previous scheme is still draining")
        last = self.segments[-1]
        remaining = None if self.jobs is None else self.jobs - r
        new = make(remaining)
        if new.n != self.n:
            raise ValueError(f"new scheme has n={new.n}, expected n={self.n}")
        new.jobs = remaining
        self._max_delay = max(self._max_delay, new.delay)
        if r == last.start:  # the old segment has issued nothing yet: replace it
            self.segments[-1] = Segment(new, r, last.slot_offset)
        else:
            last.scheme.jobs = r - last.start
            self.segments.append(Segment(new, r, SLOT_STRIDE * (len(self.segments) % 2)))
        self.switches.append({"round": r, "scheme": new.name, "params": new.params})
        self.events.append(["switch", r, {k: v for k, v in new.spec.items() if k != "jobs"}])
        return new

    # ---- properties drivers read ------------------------------------------------------------
    def _active(self, r: int) -> list[Segment]:
        # at most the last two run at once (a switch waits until the previous one drained)
        return [seg for seg in self.segments[-2:] if seg.active(r)]

    def _segment_of(self, t: int) -> Segment:
        for seg in reversed(self.segments):
            if seg.owns(t):
                return seg
        raise ValueError(f"job {t} belongs to no segment")

    @property
    def delay(self) -> int:
        """The largest delay of any segment so far (drivers scan this many jobs back)."""
        return self._max_delay

    @property
    def load(self) -> float:
        return self.current.load

    def round_load(self, r: int) -> float:
        """Normalized load of round r: the sum over the segments running in it."""
        return sum(seg.scheme.load for seg in self._active(r)) or self.current.load

    def chunk_fractions_for(self, t: int) -> np.ndarray:
        return self._segment_of(t).scheme.chunk_fractions

    def chunk_groups_for(self, t: int) -> tuple[int, ...]:
        return self._segment_of(t).scheme.chunk_groups

    @property
    def message_dtype(self) -> np.dtype:
        return np.result_type(*(seg.scheme.message_dtype for seg in self.segments))

    @property
    def max_tasks_per_round(self) -> int:
        """Of the segments so far (a switch's overlap may hold more)."""
        return max(seg.scheme.max_tasks_per_round for seg in self.segments)

    @property
    def decode_checks(self) -> dict:
        """:attr:`Scheme.decode_checks` over every segment (rounds counted once)."""
        checks = [seg.scheme.decode_checks for seg in self.segments]
        refused = {r + seg.start for seg in self.segments for r in seg.scheme.refused_rounds}
        return {"certified": all(c["certified"] for c in checks),
                "error_bound": max(c["error_bound"] for c in checks),
                "refused_rounds": len(refused),
                "min_norm_decodes": sum(c["min_norm_decodes"] for c in checks),
                "extra_repeats": sum(c["extra_repeats"] for c in checks)}

    @property
    def exact(self) -> bool:
        return all(seg.scheme.exact for seg in self.segments)

    @property
    def spec(self) -> dict:
        return {"name": self.name, "n": self.n, "jobs": self.jobs, "first": self.first_spec}

    @property
    def params(self) -> dict:
        return {"segments": [{"start_job": seg.start, "scheme": seg.scheme.name, **seg.scheme.params}
                             for seg in self.segments]}

    @property
    def total_rounds(self) -> int:
        if self.jobs is None:
            raise ValueError("total_rounds needs a finite number of jobs")
        # every older segment ended before the second-to-last one started
        return max(seg.start + seg.scheme.total_rounds for seg in self.segments[-2:])

    def job_exists(self, t: int) -> bool:
        return t >= 0 and (self.jobs is None or t < self.jobs)

    def decode_deadline(self, t: int) -> int:
        seg = self._segment_of(t)
        return t + seg.scheme.delay

    # ---- the protocol -----------------------------------------------------------------------
    def plan(self, r: int) -> Plan:
        if r != len(self.history):
            raise ValueError(f"plan({r}) called but the next round is {len(self.history)}")
        return Plan.merged(self.n, [seg.scheme.plan(r - seg.start).shifted(seg.start, seg.slot_offset)
                                    for seg in self._active(r)])

    def conforms(self, r: int, stragglers: np.ndarray) -> bool:
        return all(seg.scheme.conforms(r - seg.start, stragglers) for seg in self._active(r))

    def record(self, r: int, arrived: np.ndarray) -> None:
        arrived = np.asarray(arrived, dtype=bool)
        for seg in self._active(r):
            seg.scheme.record(r - seg.start, arrived)
        self.history.append(~arrived)
        self.events.append(["record", r, mask_text(arrived)])

    def accept_late(self, r: int, worker: int) -> None:
        self.events.append(["late", r, int(worker)])
        for seg in self.segments:
            if seg.start <= r < seg.start + len(seg.scheme.history):
                seg.scheme.accept_late(r - seg.start, worker)

    def is_decoded(self, t: int) -> bool:
        seg = self._segment_of(t)
        return seg.scheme.is_decoded(t - seg.start)

    def decodable(self, t: int) -> bool:
        if not self.job_exists(t):
            return False
        seg = self._segment_of(t)
        return seg.scheme.decodable(t - seg.start)

    def decode(self, t: int) -> Decoding:
        seg = self._segment_of(t)
        self.events.append(["decode", t])
        return seg.scheme.decode(t - seg.start).shifted(seg.start, seg.slot_offset)
