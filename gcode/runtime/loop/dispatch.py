"""When and how tasks go out: a round's calls, a worker's next round sent at its arrival
(``train.dispatch = "arrival"``), and whether a round may start before the previous round's
decodes and steps (pipelining).

Invariants:

* what a job computes never depends on when it goes out: a job's parameters are fixed when it is
  issued, and it is issued only once its model's previous job has stepped
  (:meth:`gcode.runtime.loop.jobs.JobBook.params_final`);
* round r+1 starts early (pipelined, or at a worker's arrival) only when its inputs are final
  (:meth:`Pipeline.inputs_final`), and at arrival only when the scheme's next tasks for that
  worker cannot depend on who else arrives (``Scheme.plans_from_own_arrivals``);
* every call sent is remembered until its round is older than any result still awaited, and a
  result is checked against the call it answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...codes import MiniTask
from ..wire import Call, WireTask
from .jobs import JobBook
from .stats import RunStats, Session


@dataclass
class EarlyCall:
    """Round ``round``'s call to one worker, sent at ``sent`` when its previous round arrived;
    ``finished``: when the previous round's wait saw it done, if it did."""

    round: int
    call: Any
    tasks: list
    sent: float
    finished: float | None = None


class Pipeline:
    """Whether round r may start before the previous round's decodes and steps."""

    def __init__(self, enabled: bool, scheme, jobs: JobBook, session: Session,
                 stop_requested: Callable[[], bool]):
        self.enabled, self.scheme, self.jobs, self.session = enabled, scheme, jobs, session
        self.stop_requested = stop_requested

    def inputs_final(self, r: int) -> bool:
        """Round r exists, no checkpoint or stop falls at its boundary, and its new job's model
        (concurrent mode) has no decode outstanding (job r-M decoded and stepped, which
        M >= T+2 guarantees)."""
        if (not self.enabled or r >= self.scheme.total_rounds or self.jobs.models.delayed
                or self.stop_requested()):
            return False
        ck = self.session.checkpointer
        if ck is not None and ck.due(r, self.session.start_round):
            return False
        return not self.scheme.job_exists(r) or r in self.jobs.handles or self.jobs.params_final(r)

    def may_issue_ahead(self, t: int) -> bool:
        """Whether job t's parameters may ship while round t-1's workers compute: they are final
        already, and no switch recorded in round t-1 can change job t's chunking (not for a
        switching scheme)."""
        return (not self.jobs.models.delayed and t < self.scheme.total_rounds
                and self.scheme.job_exists(t) and t not in self.jobs.handles
                and not hasattr(self.scheme, "switches") and self.jobs.params_final(t))


class Dispatcher:
    """Sends each (round, worker) its :class:`Call` (with its injected delay and fault) and
    remembers it; sends a worker its next round at its arrival when that is allowed."""

    def __init__(self, transport, jobs: JobBook, delays, ctx_id: str, inject_mode: str,
                 faults: list, num_params: int, stats: RunStats, clock, pipeline: Pipeline,
                 at_arrival: bool):
        self.transport, self.jobs, self.delays = transport, jobs, delays
        self.ctx_id, self.inject_mode, self.num_params = ctx_id, inject_mode, num_params
        self.stats, self.clock, self.pipeline = stats, clock, pipeline
        self.scheme = jobs.scheme
        self.at_arrival = at_arrival
        self.faults: dict[tuple[int, int], str] = {}
        for f in faults:
            self.faults.setdefault((f.round, f.worker), f.kind)
        self.sent: dict[tuple[int, int], Call] = {}  # (round, worker) -> the call sent
        self.needs_ctx: set[int] = set()  # workers that failed since: send the context again
        self.early: dict[int, EarlyCall] = {}  # worker -> its next round's call, sent at arrival
        self._open: tuple[int, bool] = (-1, False)  # (r, whether round r+1 may go out in round r)
        self._next_plan: tuple[int, Any] = (-1, None)  # (r, round r+1's plan if all arrive)

    def send(self, r: int, w: int, tasks: list[MiniTask], attempt: int):
        """Start worker w's round-r call for ``tasks`` (``attempt`` > 0: a retry, which carries
        no injected delay or fault); returns the transport's handle."""
        fault = self.faults.get((r, w)) if attempt == 0 else None
        jobs = sorted({t.job for t in tasks})
        dtype = self.jobs.dtype_for(tasks)
        call = self.sent[(r, w)] = Call(
            ctx=self.ctx_id, round=r, tasks=tuple(WireTask.of(t) for t in tasks), jobs=tuple(jobs),
            dtype=dtype.name, delay_s=self.delays.get(r, w) if attempt == 0 else 0.0,
            inject_mode=self.inject_mode, fault=fault if fault != "kill" else None,
            attempt=attempt)
        shipped = len(jobs) * self.num_params * 4 if self.transport.carries_gradients else 0
        self.stats.coordinator_bytes += call.nbytes(shipped)  # the star ships fp32 parameters
        handle = self.transport.call(w, call, w in self.needs_ctx,
                                     [self.jobs.handles[j] for j in jobs],
                                     len(tasks) * self.num_params * dtype.itemsize)
        if fault == "kill":
            self.transport.kill(w)
        return handle

    def forget_before(self, oldest: int) -> None:
        """Forget the calls of rounds before ``oldest`` (no result of them is awaited)."""
        for key in [k for k in self.sent if k[0] < oldest]:
            del self.sent[key]

    def cancel_early(self) -> None:
        """The run stops: the next round's calls sent at arrival will never be fetched."""
        self.transport.forget([e.call for e in self.early.values()])
        self.early.clear()

    def take_early(self) -> dict[int, EarlyCall]:
        early, self.early = self.early, {}
        return early

    # ---- dispatch at arrival ------------------------------------------------------------
    def arrived(self, r: int, w: int) -> None:
        """Worker w's round-r result arrived (and reads finite): send its round-(r+1) tasks now
        when allowed (module docstring)."""
        if not self.at_arrival or w in self.early or not self._may_send_next(r):
            return
        tasks = self._plan_if_all_arrive(r)[w]
        if tasks:
            td = self.clock.now()
            self.early[w] = EarlyCall(r + 1, self.send(r + 1, w, tasks, 0), tasks, td)
            self.stats.dispatched_at_arrival += 1
            self.stats.timings.dispatch += self.clock.now() - td

    def _may_send_next(self, r: int) -> bool:
        """Whether round r+1 may be sent during round r (decided once per round); issues job
        r+1 first when its parameters are already final."""
        if self._open[0] != r:
            ok = self.scheme.plans_from_own_arrivals and self.pipeline.inputs_final(r + 1)
            if ok and self.scheme.job_exists(r + 1) and r + 1 not in self.jobs.handles:
                ti = self.clock.now()
                self.jobs.issue(r + 1)
                self.stats.timings.issue += self.clock.now() - ti
            self._open = (r, ok)
        return self._open[1]

    def _plan_if_all_arrive(self, r: int):
        """Round r+1's plan should everyone arrive (rows of arrived workers are final)."""
        if self._next_plan[0] != r:
            tp = self.clock.now()
            self._next_plan = (r, self.scheme.next_plan_if_all_arrive(r))
            self.stats.timings.plan += self.clock.now() - tp
        return self._next_plan[1]
