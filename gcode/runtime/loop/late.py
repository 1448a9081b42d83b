"""Straggler calls still out after their round ended (the checkpoint's ``late`` section).

A straggler's result that arrives after its round is used when the scheme still holds that
round's plan (``scheme.accept_late``); one that failed is logged. Absorbing them never blocks.
Calls in flight cannot outlive a checkpoint's process: a resumed run counts them as dropped
(``late_results_dropped``), and every scheme decodes without them.

The policy is told each cut worker's time once its result is in (``Policy.observe_late``: the
online tuner learns from it), once per (round, worker), in finish order, timed as the round's
arrivals are (seconds from the worker's dispatch: the round's t0 less its head start) up to when
the coordinator saw it finished (:meth:`LateResults.seen`, while it polls a later round, or when
it fetched it). :meth:`LateResults.report` tells it before the next round's decision, as the
simulator does; a stale reply (the worker gave up for a newer round) or a failed one tells nothing.
"""

from __future__ import annotations

from typing import Any

from ...codes import MiniTask
from ..wire import STALE, Result
from .intake import Intake
from .stats import RunStats


class LateResults:
    """The straggler calls of ended rounds: (call handle, round, worker, tasks)."""

    def __init__(self, transport, intake: Intake, dispatcher, scheme, stats: RunStats, n: int,
                 clock, policy=None):
        self.transport, self.intake, self.dispatcher = transport, intake, dispatcher
        self.scheme, self.stats, self.n, self.clock = scheme, stats, n, clock
        self.observe_late = getattr(policy, "observe_late", None)
        self.calls: list[tuple[Any, int, int, list[MiniTask]]] = []
        self.cut_replies: list[dict] = []  # cut workers' compute and sleep, for the next record
        self.since: dict[Any, float] = {}     # call -> when its worker's time counts from (clock)
        self.finished: dict[Any, float] = {}  # call -> when it was seen finished (clock)
        self.fetched: dict[Any, tuple] = {}   # call -> (result, err), fetched before absorbed

    def add(self, call, r: int, w: int, tasks: list[MiniTask], since: float) -> None:
        """Round r's call to worker w, cut off; its time counts from ``since`` (clock)."""
        self.calls.append((call, r, w, tasks))
        self.since[call] = since

    def watched(self) -> list:
        """The calls not yet seen finished (a round's polls watch them: :meth:`seen`)."""
        return [call for call, *_ in self.calls if call not in self.finished]

    def seen(self, call, at: float) -> None:
        """``call`` was seen finished at ``at`` (clock)."""
        self.finished.setdefault(call, at)

    def report(self) -> None:
        """Fetch the calls that have finished and tell the policy their times (module doc)."""
        ready = self.transport.ready([call for call, *_ in self.calls if call not in self.fetched])
        if not ready:
            return
        now = self.clock.now()
        rounds = {call: (rr, w) for call, rr, w, _ in self.calls}
        for call in ready:
            self.seen(call, now)
        told = []
        for call, fetched in zip(ready, self.intake.fetch(ready)):
            self.fetched[call] = fetched
            result, err = fetched
            if err is None and isinstance(result, Result) and result.status != STALE:
                told.append((self.finished[call] - self.since[call], *rounds[call]))
        if self.observe_late is not None:
            for time, rr, w in sorted(told):  # in finish order
                self.observe_late(rr, w, time)

    def oldest(self, default: int) -> int:
        """The oldest round with a call still out (``default`` when none)."""
        return min([rr for _, rr, _, _ in self.calls] + [default])

    def take_cut_replies(self) -> list[dict]:
        replies, self.cut_replies = self.cut_replies, []
        return replies

    def absorb(self, r: int) -> None:
        """Before round r: use the late results that are ready, log the ones that failed."""
        if not self.calls:
            return
        bound = 8 * self.n  # bound the bookkeeping (e.g. many dead calls)
        if len(self.calls) > bound:
            dropped = [item[0] for item in self.calls[:-bound]]
            self.transport.forget(dropped)
            self.calls = self.calls[-bound:]
            self._forget(dropped)
        self.report()
        keep = []
        for call, rr, w, tasks in self.calls:
            if call not in self.fetched:
                keep.append((call, rr, w, tasks))
                continue
            self._absorb_one(self.fetched[call], rr, w, tasks, r)
        self._forget([item[0] for item in self.calls if item[0] in self.fetched])
        self.calls = keep

    def _forget(self, calls: list) -> None:
        for call in calls:
            for book in (self.since, self.finished, self.fetched):
                book.pop(call, None)

    def _absorb_one(self, fetched: tuple, rr: int, w: int, tasks: list[MiniTask], r: int) -> None:
        result, err = fetched
        if err is None and isinstance(result, Result) and result.status == STALE:
            if result.computed_s is not None:  # cut while it slept: how late was it?
                self.cut_replies.append({"round": rr, "worker": w,
                                         "compute_s": float(result.computed_s),
                                         "sleep_s": float(result.sleep_s)})
            return  # gave up for a newer round
        if err is None:
            err = self.intake.check(result, rr, w, tasks, defer=False)
        if err is not None:  # a straggler that then failed: log it, use nothing
            self.dispatcher.needs_ctx.add(w)
            self.stats.failures.append({"round": rr, "worker": w, "attempt": 0, "reason": err,
                                        "late": True})
            return
        self.stats.note_pid(w, result.pid)
        if rr >= r - self.scheme.delay - 1:  # the scheme still holds round rr's plan
            self.intake.store(w, rr, tasks, result)
            self.scheme.accept_late(rr, w)
            self.stats.late_used += 1

    # ---- checkpoint ---------------------------------------------------------------------
    def state_dict(self) -> list:
        """[round, worker, [jobs]] of each call still out (their results cannot outlive this
        process; see the module docstring)."""
        return [[rr, w, [t.job for t in tasks]] for _call, rr, w, tasks in self.calls]

    def load_state_dict(self, late: list) -> None:
        """A checkpoint's calls still out are never coming: count them dropped."""
        self.stats.late_dropped += len(late)
