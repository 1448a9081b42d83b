"""Waiting for one round: poll arrivals -> policy -> decision, until the round ends.

The round-ending rule is the simulator's Policy, applied by :func:`gcode.sim.rounds.decide`;
around it, mechanism only: retries after a backoff (:class:`Retries`), the round's timeout
(``cluster.round_timeout_s``: a round fails once it has polled its calls past the bound, counted
again from the re-sent calls when the workers' group failed under them and re-formed, so time
the coordinator spent elsewhere, such as re-forming the collective plane's group while the round
ran ahead, never fails workers that finished meanwhile), and polling (:meth:`Arrivals._poll`:
wait for calls, fetch, check, store, send arrived workers their next round). A decision to end
or fall back takes effect only on settled arrivals (every deferred finiteness check read), so a
non-finite result never counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ...sim.rounds import End, FallBack, RoundState, Wait, decide, partial_fallback
from ..errors import RunFailed
from ..wire import Result
from .dispatch import Dispatcher
from .intake import Intake
from .late import LateResults
from .stats import RunStats

#: seconds between polls for deferred finiteness checks while arrivals are awaited (a copy of
#: a result to the GPU takes a fraction of a millisecond, and the worker's next tasks wait for it)
CHECK_POLL_S = 0.0002


@dataclass
class OpenRound:
    """The round being waited for: its plan and calls in flight (handle -> worker), what the
    policy sees (``state``), the round's log record, its clock's start, each worker's attempt
    and last failure time, and when calls sent ahead were seen finished (round clock)."""

    r: int
    plan: list
    pending: dict
    state: RoundState
    info: dict
    t0: float
    finished_at: dict = field(default_factory=dict)
    attempts: list[int] = field(default_factory=list)
    failed_at: dict[int, float] = field(default_factory=dict)
    bound_from: float = 0.0  # round clock: the round's bound counts from here (a re-formed group)

    def __post_init__(self):
        self.attempts = self.attempts or [0] * self.state.n


class Retries:
    """Failed workers are sent their tasks again once ``backoff_s`` has passed since they
    failed (the policy says which may be retried)."""

    def __init__(self, dispatcher: Dispatcher, stats: RunStats, backoff_s: float):
        self.dispatcher, self.stats, self.backoff_s = dispatcher, stats, backoff_s

    def send_due(self, rnd: OpenRound, workers, now: float) -> float:
        """Retry the ``workers`` whose backoff is over; returns when the next one is due."""
        next_retry = math.inf
        for w in workers:
            ready_at = rnd.failed_at[w] + self.backoff_s
            if now < ready_at:
                next_retry = min(next_retry, ready_at)
                continue
            rnd.attempts[w] += 1
            self.stats.retries += 1
            del rnd.state.failed[w]
            rnd.state.head_start.pop(w, None)  # a new attempt: timed on the round's clock
            rnd.finished_at.pop(w, None)
            rnd.pending[self.dispatcher.send(rnd.r, w, rnd.plan[w], rnd.attempts[w])] = w
        return next_retry


class Arrivals:
    """Waits for a round's results (module docstring)."""

    def __init__(self, transport, intake: Intake, late: LateResults, dispatcher: Dispatcher,
                 scheme, policy, stats: RunStats, clock, cluster, hint=str):
        self.transport, self.intake, self.late, self.dispatcher = transport, intake, late, dispatcher
        self.scheme, self.policy, self.stats, self.clock = scheme, policy, stats, clock
        self.timeout_s, self.hint = cluster.round_timeout_s, hint
        self.partial = partial_fallback(policy)
        self.retries = Retries(dispatcher, stats, cluster.retry_backoff_s)
        self.on_results: Callable[[], None] = lambda: None  # after each poll that fetched
        #: whether a failure reason is the workers' group's (the collective plane's collectives),
        #: which the transport repairs before the call is sent again
        self.group_failure: Callable[[str], bool] = getattr(transport, "group_failure",
                                                            lambda reason: False)

    def wait(self, rnd: OpenRound) -> End:
        """Poll arrivals -> policy -> decision, until round ``rnd.r`` ends. A worker's times
        count from its own dispatch (``state.head_start`` seconds before t0 for one sent at its
        arrival), and a call seen finished before the round started counts from then
        (``finished_at``). Next round's calls sent at arrival are watched meanwhile."""
        if rnd.state.head_start:
            rnd.info["head_start_s"] = dict(rnd.state.head_start)
        conforms = partial(self.scheme.conforms, rnd.r)
        past_bound = False  # polled once since the bound passed (the coordinator may have been busy)
        while True:
            self._settle(rnd, block=False)
            now = self.clock.now() - rnd.t0
            decision = decide(rnd.state, now, self.policy, conforms, self.partial)
            if not isinstance(decision, Wait) and self.intake.checks.items:
                self._settle(rnd, block=True)
                continue
            if isinstance(decision, End):
                for call, w in rnd.pending.items():
                    self.late.add(call, rnd.r, w, rnd.plan[w],
                                  rnd.t0 - rnd.state.head_start.get(w, 0.0))
                rnd.info["failed"] = dict(rnd.state.failed)
                return decision
            if isinstance(decision, FallBack):
                rnd.state.fell_back = True
                rnd.info["fallback_stragglers"] = np.flatnonzero(decision.stragglers).tolist()
                continue
            next_retry = self.retries.send_due(rnd, decision.retry, now)
            bound = rnd.bound_from + self.timeout_s
            if now > bound and past_bound:
                missing = sorted(set(range(rnd.state.n)) - set(rnd.state.arrived))
                raise RunFailed(f"round {rnd.r} exceeded cluster.round_timeout_s="
                                f"{self.timeout_s}s waiting for workers {missing} "
                                f"(failures: {rnd.state.failed or 'none'}){self.hint()}")
            past_bound = now > bound
            self._poll(rnd, min(decision.until, next_retry, bound + 1e-3) - now)

    def _poll(self, rnd: OpenRound, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for calls to finish; take in those that did."""
        timeout = max(0.0, timeout)
        if self.intake.checks.items:  # poll, so that a failed check surfaces soon
            timeout = min(timeout, CHECK_POLL_S)
        if not rnd.pending:
            self.clock.sleep(min(timeout, 0.05))
            return
        timings = self.stats.timings
        watched = {e.call: e for e in self.dispatcher.early.values() if e.finished is None}
        late = set(self.late.watched())  # cut calls of ended rounds: when they finish is timed
        ready = self.transport.wait([*rnd.pending, *watched, *late], timeout)
        arrived_at = self.clock.now() - rnd.t0
        for call in [c for c in ready if c in watched or c in late]:  # fetched later
            if call in watched:  # next round's
                watched[call].finished = arrived_at + rnd.t0
            else:
                self.late.seen(call, arrived_at + rnd.t0)
            ready.remove(call)
        tp = self.clock.now()
        fetched = self.intake.fetch(ready)
        timings.fetch += self.clock.now() - tp
        for call, (result, err) in zip(ready, fetched):
            w = rnd.pending.pop(call)
            tp = self.clock.now()
            if err is None:
                err = self.intake.check(result, rnd.r, w, rnd.plan[w])
            timings.fetch += self.clock.now() - tp
            if err is not None:
                self._failed(rnd, w, err, arrived_at)
                continue
            task_s = (min(arrived_at, rnd.finished_at.get(w, math.inf))
                      + rnd.state.head_start.get(w, 0.0))
            self._arrived(rnd, w, result, task_s)
        self._settle(rnd, block=False)  # host checks: done, workers sent on
        if ready:
            self.on_results()
        tf = self.clock.now()
        self.intake.reducer.flush()  # fold queued results a few at a time, while others compute
        timings.fold += self.clock.now() - tf

    def _arrived(self, rnd: OpenRound, w: int, result: Result, task_s: float) -> None:
        """Worker w's checked result (its finiteness check possibly still deferred) arrived
        ``task_s`` seconds into its task: store it, record it, send w its next tasks (once its
        finiteness check reads true)."""
        stats, r = self.stats, rnd.r
        stats.note_pid(w, result.pid)
        self.dispatcher.needs_ctx.discard(w)
        stats.peak_rss_mb[w] = float(result.peak_rss_mb)
        rnd.state.arrived[w] = task_s
        tf = self.clock.now()
        self.intake.store(w, r, rnd.plan[w], result)
        stats.timings.fold += self.clock.now() - tf
        stats.read_ahead += int(result.read_ahead)
        if rnd.attempts[w] == 0:
            stats.compute_s.append(float(result.compute_s))
            response = task_s - float(result.sleep_s)
            stats.response_s.append(response)
            load = self.scheme.round_load(r)
            if load > 0:
                stats.slope_samples.append(response / load)
        rnd.info["arrival_s"][w] = task_s
        rnd.info["compute_s"][w] = float(result.compute_s)
        rnd.info["sleep_s"][w] = float(result.sleep_s)
        if not self.intake.checks.pending_for(w):  # else once its check reads finite
            self.dispatcher.arrived(r, w)

    def _failed(self, rnd: OpenRound, w: int, reason: str, at: float) -> None:
        """Worker w's attempt failed ``at`` seconds into the round: log it; the policy retries
        w after the backoff."""
        self.dispatcher.needs_ctx.add(w)
        rnd.state.failed[w] = reason
        rnd.failed_at[w] = at
        self.stats.failures.append({"round": rnd.r, "worker": w, "attempt": rnd.attempts[w],
                                    "reason": str(reason)})
        self._alike(rnd)
        if self.group_failure(reason):  # the workers' group failed, not w: re-send at once
            rnd.failed_at[w] = at - self.retries.backoff_s
            self.retries.send_due(rnd, [w], at)  # the transport re-forms the group first
            rnd.bound_from = self.clock.now() - rnd.t0  # the round's bound counts from here

    def _alike(self, rnd: OpenRound) -> None:
        """Stop when every worker with tasks in the round has failed in the user's code, all in
        the same way (:func:`gcode.runtime.loop.health.same_failure`): retrying cannot help,
        and the coordinator could not tell the code from the workers itself."""
        from gcode.train.workload import WorkloadError

        from ..transport.base import CodeFailure
        from .health import same_failure
        reasons = [rnd.state.failed.get(w) for w in range(rnd.state.n) if rnd.plan[w]]
        if not reasons or not all(isinstance(x, CodeFailure) for x in reasons):
            return
        if all(same_failure(x.error, reasons[0].error) for x in reasons):
            raise WorkloadError(f"every worker failed round {rnd.r} the same way: "
                                f"{reasons[0].error}{self.hint()}")

    def _settle(self, rnd: OpenRound, block: bool) -> None:
        """Read the deferred finiteness checks that are done (all when ``block``). A worker whose
        result reads finite gets its next round's tasks now; one found non-finite fails in the
        open round as if on arrival: its arrival is undone (its results were discarded)."""
        if not self.intake.checks.items:
            return
        tp = self.clock.now()
        good, bad = self.intake.settle(block)
        for item, reason in bad:
            w = item.worker
            rnd.state.arrived.pop(w, None)
            for record in ("arrival_s", "compute_s", "sleep_s"):
                rnd.info[record].pop(w, None)
            self._failed(rnd, w, reason, self.clock.now() - rnd.t0)
        self.stats.timings.fetch += self.clock.now() - tp
        for item in good:
            self.dispatcher.arrived(rnd.r, item.worker)
