"""Ending a round as arrivals come in: the decision half of "poll arrivals -> policy ->
decision", shared by the live coordinator and, for rounds with head starts, the simulator
(:func:`replay_round`).

:func:`decide` is pure (no Ray, no clock): given what has arrived or failed so far, the time
since the round started, the simulator's :class:`~gcode.sim.policy.Policy` and the scheme's
``conforms``, it says whether to keep waiting (and until when), or to end the round with which
workers arrived. It applies the same rule as ``Policy.resolve`` does on a trace:

* the cut is ``policy.deadline(fastest arrival)`` (``deadline(inf)`` before any arrival, which
  is ``inf`` for the paper rule and the fixed deadline for ``deadline``);
* a round ends when every worker has arrived, or at the cut, or when every worker has either
  arrived or failed; the workers missing then are the stragglers;
* if the stragglers do not conform, the round falls back: wait for every worker (failed ones are
  re-sent their tasks) and record the round straggler-free; with the partial-wait fallback
  (``--policy partial``) wait only until the workers still missing form a conforming set;
* ``--policy earliest`` has no cut: the round ends at the first arrival after which the workers
  still missing conform (failed workers are re-sent their tasks meanwhile);
* ``--policy gap`` moves its cut with every arrival, to ``deadline(latest arrival)``: at a cut
  where the workers still missing conform the round ends; at one where they do not, the round
  becomes a wait (failed workers are re-sent their tasks) and goes on to the next cut.

A failed worker (raised, died, returned a bad array) is a straggler: it never counts as arrived.

Head starts (``train.dispatch = "arrival"``): a worker sent its tasks ``head_start[w]`` seconds
before the round's dispatch ended is timed on its own clock. Its arrival time counts from its
own dispatch, and while it is missing its elapsed time is ``now + head_start[w]``, so every rule
above compares workers by how long their tasks took, not by when the round started. Without
head starts this is the rule above unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .policy import Policy


def partial_fallback(policy: Policy) -> bool:
    """True when ``policy`` falls back by partial wait (PartialWaitPolicy, or the online tuner
    configured to)."""
    return bool(policy.partial_fallback)


@dataclass
class RoundState:
    """What the coordinator has seen of round r so far (times in seconds since each worker's
    dispatch: ``head_start[w]`` seconds before the round's dispatch ended, 0 if absent)."""

    n: int
    arrived: dict[int, float] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)   # worker -> reason (while unresolved)
    fell_back: bool = False
    head_start: dict[int, float] = field(default_factory=dict)

    def missing_head_start(self) -> float:
        """The least head start among the workers still missing: a cut at c seconds of task
        time is reached by all of them at ``c − missing_head_start()`` on the round's clock."""
        if not self.head_start:  # round dispatch: no scan on every poll
            return 0.0
        return min((self.head_start.get(w, 0.0) for w in range(self.n) if w not in self.arrived),
                   default=0.0)

    def arrived_mask(self) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        mask[list(self.arrived)] = True
        return mask

    @property
    def fastest(self) -> float:
        return min(self.arrived.values(), default=math.inf)

    @property
    def latest(self) -> float:
        return max(self.arrived.values(), default=math.inf)


@dataclass(frozen=True)
class Wait:
    until: float                      # seconds since dispatch (inf: until the next arrival)
    retry: tuple[int, ...] = ()       # failed workers whose tasks must be re-sent (fallback)


@dataclass(frozen=True)
class End:
    arrived: np.ndarray               # bool (n,): the round's recorded arrivals
    fell_back: bool
    cut: float                        # the policy's cut (inf when it never applied)


@dataclass(frozen=True)
class FallBack:
    stragglers: np.ndarray            # the non-conforming straggler set that triggered it


Decision = Wait | End | FallBack


def decide(state: RoundState, now: float, policy: Policy,
           conforms: Callable[[np.ndarray], bool], partial: bool | None = None) -> Decision:
    """The next step for round ``state`` at ``now`` seconds after dispatch. ``partial``
    (default: :func:`partial_fallback` of the policy) selects the partial-wait fallback."""
    n = state.n
    cut = policy.deadline(state.fastest)
    if len(state.arrived) == n:
        return End(np.ones(n, dtype=bool), state.fell_back, cut)
    if policy.ends_when_conforming:  # 'earliest': no deadline, end once the missing conform
        arrived = state.arrived_mask()
        if state.arrived and conforms(~arrived):
            return End(arrived, False, now)
        return Wait(math.inf, tuple(sorted(state.failed)))
    if policy.cut_follows_latest:  # 'gap': the cut moves with every arrival
        return _decide_gap(state, now, policy, conforms)
    if state.fell_back:
        if partial if partial is not None else partial_fallback(policy):
            arrived = state.arrived_mask()
            if conforms(~arrived):  # the workers still missing conform: stop waiting
                return End(arrived, True, cut)
        return Wait(math.inf, tuple(sorted(state.failed)))
    everyone_reported = len(state.arrived) + len(state.failed) == n
    cut_now = cut - state.missing_head_start()
    if everyone_reported or now >= cut_now:
        stragglers = ~state.arrived_mask()
        if conforms(stragglers):
            return End(~stragglers, False, cut)
        return FallBack(stragglers)
    return Wait(cut_now)


def _decide_gap(state: RoundState, now: float, policy: Policy,
                conforms: Callable[[np.ndarray], bool]) -> Decision:
    """``decide`` for a cut that follows the latest arrival (``GapPolicy.resolve`` live)."""
    retry = tuple(sorted(state.failed))
    cut = policy.deadline(state.latest)
    cut_now = cut - state.missing_head_start()
    if now < cut_now:
        return Wait(cut_now, retry)
    arrived = state.arrived_mask()
    if conforms(~arrived):
        return End(arrived, state.fell_back, cut)
    if not state.fell_back:
        return FallBack(~arrived)
    return Wait(math.inf, retry)  # until the next arrival moves the cut


def replay_round(policy: Policy, times: np.ndarray, head_start: np.ndarray,
                 conforms: Callable[[np.ndarray], bool]) -> tuple[np.ndarray, float, bool]:
    """(arrived, end, fell_back) of a round whose per-worker task times are known, driving
    :func:`decide` on a virtual clock exactly as the live loop drives it on the real one. Worker
    w was sent its tasks ``head_start[w]`` seconds before the round's clock starts, so it
    arrives at ``times[w] − head_start[w]``; ``end`` is on the round's clock. With no head start
    and distinct times this is ``policy.resolve``'s outcome (a property test holds the two
    equal); workers arriving at one instant are admitted together, as the live loop admits
    the results of one poll, where ``resolve``'s partial wait admits them one by one."""
    times = np.asarray(times, dtype=np.float64)
    head = np.asarray(head_start, dtype=np.float64)
    finish = times - head
    order = np.argsort(finish, kind="stable")
    state = RoundState(len(times), head_start={int(w): float(head[w]) for w in np.flatnonzero(head)})
    now, k = 0.0, 0
    while True:
        decision = decide(state, now, policy, conforms)
        if isinstance(decision, End):
            return decision.arrived, now, state.fell_back
        if isinstance(decision, FallBack):
            state.fell_back = True
            continue
        upcoming = float(finish[order[k]]) if k < len(order) else math.inf
        if decision.until < upcoming:
            now = max(now, decision.until)
            continue
        now = max(now, upcoming)
        while k < len(order) and finish[order[k]] <= now:  # every arrival at this instant
            state.arrived[int(order[k])] = float(times[order[k]])
            k += 1
