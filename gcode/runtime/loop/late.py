"""Straggler calls still out after their round ended (the checkpoint's ``late`` section).

A straggler's result that arrives after its round is used when the scheme still holds that
round's plan (``scheme.accept_late``); one that failed is logged. Absorbing them never blocks.
Calls in flight cannot outlive a checkpoint's process: a resumed run counts them as dropped
(``late_results_dropped``), and every scheme decodes without them.
"""

from __future__ import annotations

from typing import Any

from ...codes import MiniTask
from ..wire import STALE, Result
from .intake import Intake
from .stats import RunStats


class LateResults:
    """The straggler calls of ended rounds: (call handle, round, worker, tasks)."""

    def __init__(self, transport, intake: Intake, dispatcher, scheme, stats: RunStats, n: int):
        self.transport, self.intake, self.dispatcher = transport, intake, dispatcher
        self.scheme, self.stats, self.n = scheme, stats, n
        self.calls: list[tuple[Any, int, int, list[MiniTask]]] = []
        self.cut_replies: list[dict] = []  # cut workers' compute and sleep, for the next record

    def add(self, call, r: int, w: int, tasks: list[MiniTask]) -> None:
        self.calls.append((call, r, w, tasks))

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
            self.transport.forget([item[0] for item in self.calls[:-bound]])
            self.calls = self.calls[-bound:]
        ready = set(self.transport.ready([item[0] for item in self.calls]))
        keep = []
        for call, rr, w, tasks in self.calls:
            if call not in ready:
                keep.append((call, rr, w, tasks))
                continue
            self._absorb_one(call, rr, w, tasks, r)
        self.calls = keep

    def _absorb_one(self, call, rr: int, w: int, tasks: list[MiniTask], r: int) -> None:
        result, err = self.intake.fetch([call])[0]
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
