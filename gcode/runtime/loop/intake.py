"""Results as they come in, in one place for a round's arrivals and for late ones: fetched,
checked against the call they answer (:meth:`gcode.runtime.wire.Result.problem`), staged
where jobs decode with their finiteness check (read at once, or deferred:
:mod:`gcode.runtime.loop.finite_checks`), and stored for decoding.

Invariant: a result is stored only after its form passed, and counts towards a decode only
after its values read finite; a non-finite one is discarded from the store
(:meth:`Intake.settle`'s caller undoes its arrival).
"""

from __future__ import annotations

from ...codes import MiniTask, ResultKey
from ..wire import Result
from .finite_checks import PendingChecks, Staged
from .health import Health
from .stats import RunStats


class Intake:
    """Fetches, validates and stores results for the reducer (the star plane's Decoder)."""

    def __init__(self, transport, dispatcher, reducer, scheme, stats: RunStats, health: Health,
                 num_params: int, threads: int, jobs):
        self.transport, self.dispatcher, self.reducer, self.jobs = transport, dispatcher, reducer, jobs
        self.scheme, self.stats, self.health = scheme, stats, health
        self.num_params, self.threads = num_params, threads
        self.checks = PendingChecks()
        self.gradients = transport.carries_gradients  # results hold gradient rows (star plane)

    def fetch(self, calls: list) -> list[tuple[Result | None, str | None]]:
        """(result, None) or (None, failure reason) of each finished call; a failure of the
        user's code on a worker is judged (:meth:`Health.judge`): it stops the run when the
        code, not the worker, is at fault."""
        from ..transport.base import CodeFailure
        fetched = self.transport.fetch(calls)
        for _, err in fetched:
            if isinstance(err, CodeFailure):
                self.health.judge(err)
        return fetched

    def check(self, result: Result, r: int, w: int, tasks: list[MiniTask], defer: bool = True
              ) -> str | None:
        """Validate worker w's round-r result against the call it answers (tags, shape, dtype),
        then its values: its array is staged where jobs decode and replaces the fetched one.
        Its finiteness check is read here unless ``defer``: then it joins ``checks`` and a
        failure surfaces at a later :meth:`settle`, before the round can end and before the
        worker is sent its next tasks."""
        reason = Result.problem(result, self.dispatcher.sent[(r, w)], w, self.num_params,
                                self.gradients)
        if isinstance(result, Result):
            self.stats.coordinator_bytes += result.nbytes()
        if reason is None and result.grads is not None and result.grads.size:
            source = result.grads
            staged, flag, event = self.reducer.stage(source, self.threads)
            item = Staged(r, w, tasks, staged, flag, event, source)
            result.grads = staged
            if defer:
                self.checks.add(item)
            elif not item.passed():
                reason = item.reason()
        self.health.confirm_worker_fault(r, w, [t.job for t in tasks], reason)  # diverged?
        return reason

    def store(self, w: int, r: int, tasks: list[MiniTask], result: Result) -> None:
        """Keep each task's result (its gradient row, when results carry them, and its coded
        loss) for its job, unless the job is decoded already, and which parameters it did not
        reach."""
        for k, task in enumerate(tasks):
            if not self.scheme.is_decoded(task.job):
                row = result.grads[k] if result.grads is not None else None
                self.reducer.add(ResultKey(w, r, task.slot), task, row, result.losses[k])
                if result.unreached is not None and k < len(result.unreached):
                    self.jobs.note_unreached(task.job, result.unreached[k])

    def settle(self, block: bool) -> tuple[list[Staged], list[tuple[Staged, str]]]:
        """Read the deferred checks that are done (all when ``block``): (the results found
        finite, those found non-finite with the reason); the latter are discarded from the
        store and confirmed a worker's fault (or the model's divergence)."""
        good, bad = self.checks.settle(block)
        for item, reason in bad:
            self.reducer.discard([ResultKey(item.worker, item.round, t.slot) for t in item.tasks])
            self.health.confirm_worker_fault(item.round, item.worker,
                                             [t.job for t in item.tasks], reason)
        return good, bad
