"""The live coordinator: the simulator's loop, on real Ray workers and real arrival times.

Per round r (mirrors :func:`gcode.sim.simulate`)::

    absorb late results of earlier rounds (scheme.accept_late)
    -> [checkpoint every K rounds / on a stop request: gcode.runtime.checkpoint] -> plan(r)
    -> issue job r: put model (r mod M)'s parameters and chunk ranges once (transport.put_job)
    -> dispatch compute(r, ...) to every worker (but those sent round r at their round-(r-1)
       arrival: train.dispatch = "arrival")
    -> loop: poll arrivals (transport.wait) -> policy (rounds.decide) -> decision
    -> record(r, arrived) -> policy.observe(r, times, load, end)
    -> [start round r+1 now when its inputs are final: pipelining, see Coordinator.run]
    -> decode every decodable job in fp64 -> step that job's model
    -> check decode deadlines -> log record, progress callback, run recorder

Dispatch and the loop live here; arrivals, validation, retries and late results in
:mod:`gcode.runtime.loop.arrivals`; a job's life (issue, decode, step, evaluation) in
:mod:`gcode.runtime.loop.jobs` and the round's reports in :mod:`gcode.runtime.loop.reporting`. The round-ending *policy* is the simulator's Policy object,
applied by :func:`gcode.sim.rounds.decide`. The scheme may be a
switching one (``auto``): rounds, delay, chunking and message dtype are read per round / per job.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...codes import DecodeError, MiniTask, Scheme
from ...config import TrainConfig
from ...sim.policy import Policy
from ...sim.rounds import End, partial_fallback
from ..data import WorkSpec
from ..transport.base import Clock, WallClock
from ..wire import Call, WireTask
from .arrivals import Arrivals
from .decode import Decoder
from .finite_checks import PendingChecks
from .inject import DelaySource
from .jobs import JobLifecycle
from .jsonl_log import JsonlWriter
from .reporting import RoundReporting, Timings

ProgressFn = Callable[[dict], None]

APPROX_DELAYED = ("delayed-gradient SGD: one model; the gradient of job t (computed on the "
                  "parameters at round t) is applied when decoded, up to T rounds late")
APPROX_IGNORE = "ignore-stragglers: rescaled partial sums, a biased gradient estimate"


@dataclass
class Coordinator(Arrivals, JobLifecycle, RoundReporting):
    cfg: TrainConfig
    scheme: Scheme
    policy: Policy
    transport: Any               # gcode.runtime.transport.ray_transport: RayTransport or ShmTransport
    spec: WorkSpec
    models: list                 # one gcode.train.FlatModel per concurrent model
    optimizers: list
    delays: DelaySource          # injected seconds per (round, worker)
    writer: JsonlWriter
    progress: ProgressFn | None = None
    ctx: tuple = ("", None)      # (context id, ObjectRef of the WorkSpec) the workers adopted
    recorder: Any = None         # gcode.telemetry RunRecorder (run log + live monitor), optional
    auto_slope: bool = False     # measure the tuner's load slope live (scheme 'auto')
    checkpointer: Any = None     # gcode.runtime.checkpoint.Checkpointer, optional
    run_id: str = ""             # the run's id (kept across resumes)
    device: Any = None           # torch device of the models and the decode (None: CPU)
    decode_device: Any = None    # torch device of the fp64 decode (None: the host)
    decode_threads: int = 1      # host decode threads (host decode only)
    eval_dataset: Any = None     # held-out dataset for train.eval_every (read on the coordinator)
    clock: Clock = field(default_factory=WallClock)  # the run's time (virtual for in-process workers)

    # ---- state ------------------------------------------------------------------------
    jobs_ctx: dict = field(default_factory=dict)    # job -> the transport's handle of its data
    job_dtype: dict = field(default_factory=dict)   # job -> message dtype
    late: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    pids: dict = field(default_factory=dict)
    restarts: dict = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    compute_s: list = field(default_factory=list)
    response_s: list = field(default_factory=list)
    slope_samples: list = field(default_factory=list)
    durations: list = field(default_factory=list)
    waits: int = 0
    decoded: int = 0
    late_used: int = 0
    retries: int = 0
    stragglers_total: int = 0
    max_rel_error: float | None = None
    last_loss: float | None = None
    model_loss: dict = field(default_factory=dict)  # model -> mean batch loss of its last job
    peak_rss_mb: dict = field(default_factory=dict)  # worker -> peak resident memory reported
    round_compute_s: float = 0.0  # Σ over rounds of the arrived workers' mean compute time
    read_ahead: int = 0  # tasks whose batch a worker had read ahead (cluster.prefetch)
    evals: list = field(default_factory=list)      # {"round", "model", "loss"[, "accuracy"]}
    updates: list = field(default_factory=list)
    stopped: bool = False
    stop_reason: str = ""
    needs_ctx: set = field(default_factory=set)  # workers that failed since: resend the context
    late_dropped: int = 0        # straggler results in flight when a checkpoint was resumed
    start_round: int = 0         # first round of this session (the checkpoint's, when resumed)
    runtime_before: float = 0.0  # runtime_s of the sessions before a resume
    sessions: int = 1            # 1 + resumes
    resumed_from: str | None = None
    pipelined: int = 0           # rounds dispatched before the previous round's decodes
    dispatched_at_arrival: int = 0  # tasks sent at the worker's previous arrival (dispatch=arrival)
    early: dict = field(default_factory=dict)  # worker -> EarlyCall of the next round
    cut_replies: list = field(default_factory=list)  # cut workers' compute and sleep, to log
    arrival_dispatch: tuple = (-1, False)  # (r, whether round r+1 may be sent during round r)
    next_plan: tuple = (-1, None)          # (r, round r+1's plan should everyone arrive)
    checks: PendingChecks = field(default_factory=PendingChecks)  # deferred finite checks

    def __post_init__(self):
        self.n = self.scheme.n
        self.M = len(self.models)
        self.delayed = self.cfg.train.mode == "delayed"
        self.decoder = Decoder(self.spec.num_params, streaming=self.cfg.train.streaming_decode,
                               threads=self.decode_threads, device=self.decode_device)
        self.updates = [0] * self.M
        self._local = None  # a TaskComputer for check_decode, built on first use
        self.partial = partial_fallback(self.policy)
        self._bounds_cache: dict[tuple, tuple] = {}
        self._calls: dict[tuple[int, int], Call] = {}  # (round, worker) -> the call sent
        self.faults = {}
        for f in self.cfg.faults:
            self.faults.setdefault((f.round, f.worker), f.kind)

    @property
    def T(self) -> int:
        return self.scheme.delay  # may grow when a switching scheme changes codes

    # ---- helpers ----------------------------------------------------------------------
    def model_of(self, t: int) -> int:
        return 0 if self.delayed else t % self.M

    def _dtype(self, tasks: list[MiniTask]) -> np.dtype:
        if not tasks:
            return np.dtype(np.float32)
        return np.result_type(*(self.job_dtype[t.job] for t in tasks))

    def _dispatch(self, r: int, w: int, tasks: list[MiniTask], attempt: int):
        fault = self.faults.get((r, w)) if attempt == 0 else None
        jobs = sorted({t.job for t in tasks})
        delay = self.delays.get(r, w) if attempt == 0 else 0.0
        dtype = self._dtype(tasks)
        sent = self._calls[(r, w)] = Call(
            ctx=self.ctx[0], round=r, tasks=tuple(WireTask.of(t) for t in tasks), jobs=tuple(jobs),
            dtype=dtype.name, delay_s=delay, inject_mode=self.cfg.inject.mode,
            fault=fault if fault != "kill" else None, attempt=attempt)
        call = self.transport.call(w, sent, w in self.needs_ctx, [self.jobs_ctx[j] for j in jobs],
                                   len(tasks) * self.spec.num_params * dtype.itemsize)
        if fault == "kill":
            self.transport.kill(w)
        return call

    def _stop_requested(self) -> bool:
        """A stop asked through the live monitor ends the run before the next round."""
        if self.recorder is not None and self.recorder.stop_requested and not self.stopped:
            self.stopped = True
            self.stop_reason = getattr(self.recorder, "stop_reason", "") or "stop requested"
        return self.stopped

    def _checkpoint(self, r: int, start: float) -> None:
        tc = self.clock.now()
        self.checkpointer.save(self, r, self.runtime_before + (tc - start))
        self.timings.checkpoint += self.clock.now() - tc

    def run(self) -> float:
        """Run every round from ``start_round`` (0, or a resumed checkpoint's round); returns the
        wall-clock seconds of this session's training loop.

        With a checkpointer, the state at the boundary before round r (after absorbing the late
        results that are ready) is written when r is a multiple of ``checkpoint.every``, and when
        a stop request ends the run.

        Pipelining: once round r has ended and been recorded, round r+1 is dispatched *before*
        round r's decodes, steps and reports when its inputs are already final (see
        :meth:`_inputs_final`), so that work overlaps the workers' compute. What every job
        computes is unchanged: a job's parameters are fixed when it is issued."""
        self._switches_seen = len(getattr(self.scheme, "switches", ()))  # announced before a resume
        start = self.clock.now()
        r = self.start_round
        ahead: Started | None = None  # round r, already dispatched while round r-1 finished
        while r < self.scheme.total_rounds:
            if ahead is None:
                if self._stop_requested():
                    self.transport.forget([e.call for e in self.early.values()])
                    self.early.clear()
                    if self.checkpointer is not None:
                        self._absorb_late(r)
                        self._checkpoint(r, start)
                    break
                ahead = self._start_round(r, start)
            now, ahead = ahead, None
            end, info = self._end_round(now)
            if self._inputs_final(r + 1):
                ahead = self._start_round(r + 1, start)
            self._finish_round(now, end, info, start, ahead)
            r += 1
        self.rounds_run = r
        return self.clock.now() - start

    def _inputs_final(self, r: int) -> bool:
        """Whether round r may start before the previous round's decodes and steps: r exists, no
        checkpoint or stop falls at its boundary, and its new job's model (concurrent mode) has
        no decode outstanding (job r-M decoded and stepped, which M >= T+2 guarantees)."""
        if (not self.cfg.train.pipeline or r >= self.scheme.total_rounds or self.delayed
                or self._stop_requested()):
            return False
        if self.checkpointer is not None and self.checkpointer.due(r, self.start_round):
            return False
        return not self.scheme.job_exists(r) or r in self.jobs_ctx or self._params_final(r)

    def _start_round(self, r: int, start: float) -> Started:
        """Absorb late results, [checkpoint], plan round r, issue its job, dispatch its tasks."""
        round_start = tp = self.clock.now()
        failures_before = len(self.failures)  # late failures found now belong to round r
        self._absorb_late(r)
        if self.checkpointer is not None and self.checkpointer.due(r, self.start_round):
            self.timings.plan += self.clock.now() - tp
            self._checkpoint(r, start)
            tp = self.clock.now()
        plan = self.scheme.plan(r)
        ti = self.clock.now()
        self.timings.plan += ti - tp
        if self.scheme.job_exists(r) and r not in self.jobs_ctx:
            self._issue(r)
        td = self.clock.now()
        self.timings.issue += td - ti
        early, self.early = self.early, {}
        pending = {}
        for w in range(self.n) if any(plan) else ():  # a tail round with no task: none
            if w in early:
                if early[w].round != r or early[w].tasks != plan[w]:
                    raise RuntimeError(f"{self.scheme.name}: worker {w}'s round-{r} tasks sent "
                                       f"at its arrival differ from round {r}'s plan (a scheme "
                                       f"claiming plans_from_own_arrivals broke it)")
                pending[early[w].call] = w
            else:
                pending[self._dispatch(r, w, plan[w], 0)] = w
        t0 = self.clock.now()
        self.timings.dispatch += t0 - td
        head_start = {w: t0 - e.sent for w, e in early.items()}
        finished_at = {w: e.finished - t0 for w, e in early.items() if e.finished is not None}
        return Started(r, plan, pending, round_start, t0, failures_before, head_start,
                       finished_at)

    def _dispatch_at_arrival(self, r: int, w: int) -> None:
        """Send worker w, whose round-r results just arrived, its round-(r+1) tasks now, when
        round r+1's inputs are final and the scheme's next tasks for w cannot depend on who
        else arrives (``Scheme.plans_from_own_arrivals``, ``train.dispatch = "arrival"``)."""
        if (self.cfg.train.dispatch != "arrival" or w in self.early
                or not self._arrival_dispatch_open(r)):
            return
        tasks = self._next_plan(r)[w]
        if tasks:
            td = self.clock.now()
            self.early[w] = EarlyCall(r + 1, self._dispatch(r + 1, w, tasks, 0), tasks, td)
            self.dispatched_at_arrival += 1
            self.timings.dispatch += self.clock.now() - td

    def _arrival_dispatch_open(self, r: int) -> bool:
        """Whether round r+1 may be sent during round r (once per round, cached); issues job
        r+1 first when its parameters are already final."""
        if self.arrival_dispatch[0] != r:
            ok = self.scheme.plans_from_own_arrivals and self._inputs_final(r + 1)
            if ok and self.scheme.job_exists(r + 1) and r + 1 not in self.jobs_ctx:
                ti = self.clock.now()
                self._issue(r + 1)
                self.timings.issue += self.clock.now() - ti
            self.arrival_dispatch = (r, ok)
        return self.arrival_dispatch[1]

    def _next_plan(self, r: int):
        """Round r+1's plan should everyone arrive (rows of arrived workers are final)."""
        if self.next_plan[0] != r:
            tp = self.clock.now()
            self.next_plan = (r, self.scheme.next_plan_if_all_arrive(r))
            self.timings.plan += self.clock.now() - tp
        return self.next_plan[1]

    def _end_round(self, now: Started) -> tuple[End, dict]:
        """Wait for round ``now.r`` to end (policy), then record who arrived."""
        r = now.r
        info: dict = {"arrival_s": {}, "compute_s": {}, "sleep_s": {}, "wait_s": 0.0}
        if not any(now.plan):
            end = End(np.ones(self.n, dtype=bool), False, math.inf)
        else:
            end = self._wait_round(r, now.plan, now.pending, now.t0, info, now.head_start,
                                   now.finished_at)
            info["wait_s"] = self.clock.now() - now.t0
            self.timings.wait += info["wait_s"]
        info["failures"] = self.failures[now.failures_before:]
        tdec = self.clock.now()
        self.scheme.record(r, end.arrived)
        self._observe(r, info)
        self.timings.decode += self.clock.now() - tdec
        self.waits += end.fell_back
        self.stragglers_total += int((~end.arrived).sum())
        return end, info

    def _finish_round(self, now: Started, end: End, info: dict, start: float,
                      ahead: Started | None) -> None:
        """Decode and step every decodable job, check deadlines, evaluate, log round ``now.r``
        (while round r+1's workers compute, when it started ahead)."""
        r, T = now.r, self.T
        busy = self.timings.overhead()
        jobs_done = [self._finish_job(t) for t in range(max(0, r - T), r + 1)
                     if self.scheme.decodable(t)]
        for t in range(max(0, r - T), r + 1):
            if (self.scheme.job_exists(t) and self.scheme.decode_deadline(t) == r
                    and not self.scheme.is_decoded(t)):
                raise DecodeError(f"{self.scheme.name}: job {t} not decodable at its deadline "
                                  f"round {r}; the recorded stragglers broke the scheme's "
                                  f"guarantee")
        self.decoder.forget_before(r - T)
        if info["compute_s"]:
            self.round_compute_s += float(np.mean(list(info["compute_s"].values())))
        info["evals"] = self._evaluate(r)
        oldest = min([item[1] for item in self.late] + [r + 1])
        for key in [k for k in self._calls if k[0] < oldest]:
            del self._calls[key]
        if not any(now.plan):
            duration = 0.0
        elif ahead is not None:  # the round lasted until the next one started
            duration = ahead.round_start - now.round_start
        else:
            duration = self.clock.now() - now.round_start
        self.durations.append(duration)
        info["next_started_early"] = ahead is not None
        tl = self.clock.now()
        self._record(r, now.plan, end, info, duration, jobs_done,
                     self.runtime_before + self.clock.now() - start)
        self.timings.log += self.clock.now() - tl
        if ahead is not None:
            self._issue_ahead(r + 2)
            self.timings.overlapped += self.timings.overhead() - busy
            self.pipelined += 1

    def _issue_ahead(self, t: int) -> None:
        """While round t-1's workers compute, put job t's parameters in the store when they are
        final already (job t-M decoded and stepped), so round t only dispatches. Not for a
        switching scheme: a switch recorded in round t-1 may change job t's chunking."""
        if (self.delayed or t >= self.scheme.total_rounds or not self.scheme.job_exists(t)
                or t in self.jobs_ctx or hasattr(self.scheme, "switches")
                or not self._params_final(t)):
            return
        ti = self.clock.now()
        self._issue(t)
        self.timings.issue += self.clock.now() - ti


@dataclass
class Started:
    """A round whose tasks are out: its plan, the calls in flight (ref -> worker), when it
    started (``round_start``), when its dispatch ended (``t0``: arrival times count from
    here, or from a worker's own earlier dispatch, ``head_start`` seconds before) and how many
    failures were logged before it."""

    r: int
    plan: list
    pending: dict
    round_start: float
    t0: float
    failures_before: int
    head_start: dict = field(default_factory=dict)  # worker -> seconds sent before t0
    finished_at: dict = field(default_factory=dict)  # worker -> seen finished (t0's clock, < 0)


@dataclass
class EarlyCall:
    """Round ``round``'s call to one worker, sent at ``sent`` when its previous round arrived;
    ``finished``: when the previous round's wait saw it done (perf_counter), if it did."""

    round: int
    call: Any
    tasks: list
    sent: float
    finished: float | None = None
