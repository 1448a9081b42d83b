"""How a round's results come in: poll arrivals (transport.wait) -> validate -> store, the policy's
decisions in between, retries of failed workers, and straggler results that arrive after their
round ended (``scheme.accept_late``).

:class:`Arrivals` is a mixin of :class:`gcode.runtime.loop.coordinator.Coordinator`: mechanism only;
the round-ending rule is the Policy applied by :func:`gcode.sim.rounds.decide`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...codes import MiniTask, ResultKey
from ...sim.rounds import End, FallBack, RoundState, Wait, decide
from ..errors import RunFailed
from ..wire import STALE, Result
from .finite_checks import Staged
from .health import confirm_worker_fault, explain_workload_error

#: seconds between polls for deferred finiteness checks while arrivals are awaited (a copy of
#: a result to the GPU takes a fraction of a millisecond, and the worker's next tasks wait for it)
CHECK_POLL_S = 0.0002


@dataclass
class OpenRound:
    """The round being waited for: what the policy sees (``state``), the round's log record,
    its clock's start, and each worker's attempt number and last failure time."""

    r: int
    state: RoundState
    info: dict
    t0: float
    attempts: list[int] = field(default_factory=list)
    failed_at: dict[int, float] = field(default_factory=dict)

    def __post_init__(self):
        self.attempts = self.attempts or [0] * self.state.n


class Arrivals:
    def _fetch_all(self, calls: list) -> list[tuple[Result | None, str | None]]:
        """(result, None) or (None, failure reason) of each finished call; a failure of the
        user's code on a worker stops the run, diagnosed (a diverged model?)."""
        from gcode.train.workload import WorkloadError
        try:
            return self.transport.fetch(calls)
        except WorkloadError as cause:  # the user's code, not the worker, is at fault
            raise explain_workload_error(self, cause) from None

    def _note_pid(self, w: int, payload: Result) -> None:
        pid = payload.pid
        if pid is None:
            return
        if w in self.pids and self.pids[w] != pid:
            self.restarts[w] = self.restarts.get(w, 0) + 1
        self.pids[w] = pid

    def _store(self, w: int, r: int, tasks: list[MiniTask], payload: Result) -> None:
        for k, task in enumerate(tasks):
            if not self.scheme.is_decoded(task.job):
                self.decoder.add(ResultKey(w, r, task.slot), task, payload.grads[k],
                                 payload.losses[k])

    def _check(self, payload, r: int, w: int, tasks: list[MiniTask], defer: bool = True
               ) -> str | None:
        """Validate worker w's round-r result against what was sent (tags, shape, dtype, then
        finite values). The result's array is staged where jobs decode (:meth:`Decoder.stage`)
        and replaces the host array in ``payload``. Its finiteness check is read here unless
        ``defer``: then it joins ``self.checks`` and a failure surfaces at a later
        :meth:`_settle_checks`, before the round can end and before the worker is sent its
        next tasks."""
        reason = Result.problem(payload, self._calls[(r, w)], w, self.spec.num_params)
        if reason is None and payload.grads.size:
            source = payload.grads
            staged, flag, event = self.decoder.stage(source, self.decode_threads)
            item = Staged(r, w, tasks, staged, flag, event, source)
            payload.grads = staged
            if defer:
                self.checks.add(item)
            elif not item.passed():
                reason = item.reason()
        confirm_worker_fault(self, r, w, [t.job for t in tasks], reason)  # diverged model?
        return reason

    def _settle_checks(self, rnd: OpenRound, block: bool) -> None:
        """Read the deferred finiteness checks that are done (all when ``block``). A worker
        whose result reads finite gets its next round's tasks now (dispatch at arrival follows
        a settled result only); one found non-finite fails in the open round as if on
        arrival: the arrival is undone and its stored results are discarded."""
        if not self.checks.items:
            return
        tp = self.clock.now()
        good, bad = self.checks.settle(block)
        for item, reason in bad:
            w = item.worker
            self.decoder.discard([ResultKey(w, item.round, t.slot) for t in item.tasks])
            rnd.state.arrived.pop(w, None)
            for record in ("arrival_s", "compute_s", "sleep_s"):
                rnd.info[record].pop(w, None)
            self._round_failed(rnd, w, reason, self.clock.now() - rnd.t0)
            confirm_worker_fault(self, rnd.r, w, [t.job for t in item.tasks], reason)
        self.timings.fetch += self.clock.now() - tp
        for item in good:
            self._dispatch_at_arrival(rnd.r, item.worker)

    # ---- late results -----------------------------------------------------------------
    def _absorb_late(self, r: int) -> None:
        """Use stragglers' results that arrived after their round ended (scheme.accept_late),
        and log the ones that turned out to be failures. Never blocks."""
        if not self.late:
            return
        if len(self.late) > 8 * self.n:  # bound the bookkeeping (e.g. many dead calls)
            self.transport.forget([item[0] for item in self.late[:-8 * self.n]])
            self.late = self.late[-8 * self.n:]
        ready = set(self.transport.ready([item[0] for item in self.late]))
        keep = []
        for ref, rr, w, tasks in self.late:
            if ref not in ready:
                keep.append((ref, rr, w, tasks))
                continue
            payload, err = self._fetch_all([ref])[0]
            if err is None and isinstance(payload, Result) and payload.status == STALE:
                if payload.computed_s is not None:  # cut while it slept: how late?
                    self.cut_replies.append({"round": rr, "worker": w,
                                             "compute_s": float(payload.computed_s),
                                             "sleep_s": float(payload.sleep_s)})
                continue  # gave up for a newer round
            if err is None:
                err = self._check(payload, rr, w, tasks, defer=False)
            if err is not None:  # a straggler that then failed: log it, use nothing
                self.needs_ctx.add(w)
                self.failures.append({"round": rr, "worker": w, "attempt": 0, "reason": err,
                                      "late": True})
                continue
            self._note_pid(w, payload)
            if rr >= r - self.T - 1:  # the scheme still holds round rr's plan
                self._store(w, rr, tasks, payload)
                self.scheme.accept_late(rr, w)
                self.late_used += 1
        self.late = keep

    # ---- one round ----------------------------------------------------------------------
    def _wait_round(self, r: int, plan: list[list[MiniTask]], pending: dict, t0: float,
                    info: dict, head_start: dict, finished_at: dict) -> End:
        """Poll arrivals -> policy -> decision, until the round ends. A worker's times count
        from its own dispatch (``head_start`` seconds before t0 for one sent at its arrival),
        and a call seen finished before the round started counts from then (``finished_at``,
        on the round's clock). Next round's calls sent at arrival are watched meanwhile. A
        decision to end or fall back takes effect only on settled arrivals (every deferred
        finiteness check read)."""
        cc = self.cfg.cluster
        now_round = OpenRound(r, RoundState(self.n, head_start=dict(head_start)), info, t0)
        state = now_round.state
        finished_at = dict(finished_at)
        if head_start:
            info["head_start_s"] = dict(head_start)
        conforms = lambda stragglers: self.scheme.conforms(r, stragglers)
        while True:
            self._settle_checks(now_round, block=False)
            now = self.clock.now() - t0
            decision = decide(state, now, self.policy, conforms, self.partial)
            if not isinstance(decision, Wait) and self.checks.items:
                self._settle_checks(now_round, block=True)
                continue
            if isinstance(decision, End):
                for ref, w in pending.items():
                    self.late.append((ref, r, w, plan[w]))
                info["failed"] = {w: reason for w, reason in state.failed.items()}
                return decision
            if isinstance(decision, FallBack):
                state.fell_back = True
                info["fallback_stragglers"] = np.flatnonzero(decision.stragglers).tolist()
                continue
            assert isinstance(decision, Wait)
            next_retry = math.inf
            for w in decision.retry:
                ready_at = now_round.failed_at[w] + cc.retry_backoff_s
                if now >= ready_at:
                    now_round.attempts[w] += 1
                    self.retries += 1
                    del state.failed[w]
                    state.head_start.pop(w, None)  # a new attempt: timed on the round's clock
                    finished_at.pop(w, None)
                    pending[self._dispatch(r, w, plan[w], now_round.attempts[w])] = w
                else:
                    next_retry = min(next_retry, ready_at)
            if now > cc.round_timeout_s:
                missing = sorted(set(range(self.n)) - set(state.arrived))
                raise RunFailed(f"round {r} exceeded cluster.round_timeout_s="
                                   f"{cc.round_timeout_s}s waiting for workers {missing} "
                                   f"(failures: {state.failed or 'none'}){self._checkpoint_hint()}")
            until = min(decision.until, next_retry, cc.round_timeout_s + 1e-3)
            timeout = max(0.0, until - now)
            if self.checks.items:  # poll, so that a failed check surfaces soon
                timeout = min(timeout, CHECK_POLL_S)
            if not pending:
                self.clock.sleep(min(timeout, 0.05))
                continue
            watched = {e.call: e for e in self.early.values() if e.finished is None}
            ready = self.transport.wait([*pending, *watched], timeout)
            arrived_at = self.clock.now() - t0
            for ref in [ref for ref in ready if ref in watched]:  # next round's: fetched then
                watched[ref].finished = arrived_at + t0
                ready.remove(ref)
            tp = self.clock.now()
            fetched = self._fetch_all(ready)
            self.timings.fetch += self.clock.now() - tp
            for ref, (payload, err) in zip(ready, fetched):
                w = pending.pop(ref)
                tp = self.clock.now()
                if err is None:
                    err = self._check(payload, r, w, plan[w])
                self.timings.fetch += self.clock.now() - tp
                if err is not None:
                    self._round_failed(now_round, w, err, arrived_at)
                    continue
                task_s = min(arrived_at, finished_at.get(w, math.inf)) + state.head_start.get(w, 0.0)
                self._arrived(now_round, w, plan[w], payload, task_s)
            self._settle_checks(now_round, block=False)  # host checks: done, workers sent on
            tf = self.clock.now()
            self.decoder.flush()  # fold queued results a few at a time, while others compute
            self.timings.fold += self.clock.now() - tf

    def _arrived(self, rnd: OpenRound, w: int, tasks: list[MiniTask], payload: Result,
                 task_s: float) -> None:
        """Worker w's valid result (its finiteness check possibly still deferred) arrived
        ``task_s`` seconds into its task: store it, record it, send w its next tasks (once
        the result's finiteness check reads true)."""
        r = rnd.r
        self._note_pid(w, payload)
        self.needs_ctx.discard(w)
        self.peak_rss_mb[w] = float(payload.peak_rss_mb)
        rnd.state.arrived[w] = task_s
        tf = self.clock.now()
        self._store(w, r, tasks, payload)
        self.timings.fold += self.clock.now() - tf
        self.read_ahead += int(payload.read_ahead)
        if rnd.attempts[w] == 0:
            self.compute_s.append(float(payload.compute_s))
            response = task_s - float(payload.sleep_s)
            self.response_s.append(response)
            load = self.scheme.round_load(r)
            if load > 0:
                self.slope_samples.append(response / load)
        rnd.info["arrival_s"][w] = task_s
        rnd.info["compute_s"][w] = float(payload.compute_s)
        rnd.info["sleep_s"][w] = float(payload.sleep_s)
        if not self.checks.pending_for(w):  # else once its check reads finite
            self._dispatch_at_arrival(r, w)

    def _round_failed(self, rnd: OpenRound, w: int, reason: str, at: float) -> None:
        """Worker w's attempt in the open round failed ``at`` seconds into it: log it; the
        policy retries w after the backoff."""
        self.needs_ctx.add(w)
        rnd.state.failed[w] = reason
        rnd.failed_at[w] = at
        self.failures.append({"round": rnd.r, "worker": w, "attempt": rnd.attempts[w],
                              "reason": reason})
