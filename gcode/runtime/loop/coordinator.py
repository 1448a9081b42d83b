"""The live coordinator: the simulator's loop, on real workers and real arrival times.

Per round r (mirrors :func:`gcode.sim.simulate`)::

    absorb late results of earlier rounds (scheme.accept_late)            LateResults
    -> [checkpoint every K rounds / on a stop request]                      Session.checkpointer
    -> plan(r) -> issue job r: ship model (r mod M)'s parameters once       JobBook
    -> call every worker (but those sent round r at their round-(r-1)       Dispatcher
       arrival: train.dispatch = "arrival")
    -> poll arrivals -> policy (rounds.decide) -> decision                  Arrivals
    -> record(r, arrived) -> policy.observe_late(cut results in by now)     LateResults
       -> policy.observe(r, times, load, end)                               Reporter
    -> [start round r+1 now when its inputs are final: pipelining]          Pipeline
    -> decode every decodable job in fp64 -> step that job's model           JobBook, Reducer
    -> check decode deadlines -> log record, progress callback, run log     Reporter

A plane that steps the models itself may report a step later (the collective plane: with the
workers' next calls); a round's record is held until its jobs' steps are reported, and written
in order (:meth:`Coordinator._write_settled`), at the latest when the run ends.

The coordinator is composed of the parts named on the right, each owning its state
(:func:`gcode.runtime.loop.compose.compose` builds them); it runs the rounds and composes a
checkpoint of their state dicts (:meth:`Coordinator.state_dict`). The round-ending *policy* is
the simulator's Policy object. The scheme may be a switching one (``auto``): rounds, delay,
chunking and message dtype are read per round / per job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...codes import DecodeError
from ...sim.rounds import End, RoundState
from .arrivals import Arrivals, OpenRound
from .dispatch import Dispatcher, Pipeline
from .jobs import JobBook
from .late import LateResults
from .models import ModelBank
from .reporting import Reporter
from .stats import RunStats, Session

APPROX_DELAYED = ("delayed-gradient SGD: one model; the gradient of job t (computed on the "
                  "parameters at round t) is applied when decoded, up to T rounds late")
APPROX_IGNORE = "ignore-stragglers: rescaled partial sums, a biased gradient estimate"


@dataclass
class Started:
    """A round whose tasks are out: its plan, the calls in flight (handle -> worker), when it
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
class Coordinator:
    """Runs the rounds over its parts (module docstring)."""

    scheme: Any
    policy: Any
    transport: Any               # gcode.runtime.transport.base.Transport
    reducer: Any                 # gcode.runtime.transport.base.Reducer (the star plane's Decoder)
    clock: Any                   # gcode.runtime.transport.base.Clock
    session: Session
    stats: RunStats
    models: ModelBank
    jobs: JobBook
    pipeline: Pipeline
    dispatcher: Dispatcher
    late: LateResults
    arrivals: Arrivals
    reporter: Reporter
    delays: Any                  # gcode.runtime.loop.inject.DelaySource
    num_params: int
    config: dict = field(default_factory=dict)  # the run's config (saved in checkpoints)
    eval_dataset: Any = None     # held-out dataset (read on the coordinator)
    eval_every: int = 0
    #: round records written once their jobs' steps are reported (Reporter.record's arguments)
    held: list = field(default_factory=list)

    def __post_init__(self):
        self.arrivals.on_results = self._write_settled  # reports come in with results

    @property
    def n(self) -> int:
        return self.scheme.n

    # ---- the rounds -----------------------------------------------------------------------
    def run(self) -> float:
        """Run every round from ``session.start_round``; returns the seconds of this session's
        training loop. With a checkpointer, the state at the boundary before round r (after
        absorbing the late results that are ready) is written when r is a multiple of
        ``checkpoint.every``, at r = jobs (the last round that issues no job: where a longer
        run continues, :mod:`gcode.runtime.checkpoint`), at the end of the run, and when a stop
        request ends it.

        Pipelining: once round r has ended and been recorded, round r+1 is dispatched *before*
        round r's decodes, steps and reports when its inputs are already final
        (:meth:`Pipeline.inputs_final`), so that work overlaps the workers' compute."""
        start = self.clock.now()
        r = self.session.start_round
        ahead: Started | None = None  # round r, already dispatched while round r-1 finished
        while r < self.scheme.total_rounds:
            if ahead is None:
                if self.reporter.stop_requested():
                    self.dispatcher.cancel_early()
                    if self.session.checkpointer is not None:
                        self.late.absorb(r)
                        self._checkpoint(r, start)
                    break
                ahead = self._start_round(r, start)
            now, ahead = ahead, None
            end, info = self._end_round(now)
            if self.pipeline.inputs_final(r + 1):
                ahead = self._start_round(r + 1, start)
            self._finish_round(now, end, info, start, ahead)
            r += 1
        self._settle()
        ck = self.session.checkpointer
        if ck is not None and r == self.scheme.total_rounds > self.session.start_round:
            self.late.absorb(r)
            self._checkpoint(r, start)  # the final state, always
        self.stats.rounds_run = r
        return self.clock.now() - start

    def _start_round(self, r: int, start: float) -> Started:
        """Absorb late results, [checkpoint], plan round r, issue its job, dispatch its tasks."""
        timings = self.stats.timings
        round_start = tp = self.clock.now()
        failures_before = len(self.stats.failures)  # late failures found now belong to round r
        self.late.absorb(r)
        self._write_settled()
        ck = self.session.checkpointer
        if ck is not None and ck.due(r, self.session.start_round):
            timings.plan += self.clock.now() - tp
            self._checkpoint(r, start)
            tp = self.clock.now()
        plan = self.scheme.plan(r)
        ti = self.clock.now()
        timings.plan += ti - tp
        if self.scheme.job_exists(r) and r not in self.jobs.handles:
            self.jobs.issue(r)
        td = self.clock.now()
        timings.issue += td - ti
        early = self.dispatcher.take_early()
        pending = {}
        for w in range(self.n) if any(plan) else ():  # a tail round with no task: none
            if w in early:
                if early[w].round != r or early[w].tasks != plan[w]:
                    raise RuntimeError(f"{self.scheme.name}: worker {w}'s round-{r} tasks sent "
                                       f"at its arrival differ from round {r}'s plan (a scheme "
                                       f"claiming plans_from_own_arrivals broke it)")
                pending[early[w].call] = w
            else:
                pending[self.dispatcher.send(r, w, plan[w], 0)] = w
        t0 = self.clock.now()
        timings.dispatch += t0 - td
        head_start = {w: t0 - e.sent for w, e in early.items()}
        finished_at = {w: e.finished - t0 for w, e in early.items() if e.finished is not None}
        return Started(r, plan, pending, round_start, t0, failures_before, head_start,
                       finished_at)

    def _end_round(self, now: Started) -> tuple[End, dict]:
        """Wait for round ``now.r`` to end (policy), then record who arrived."""
        r, stats = now.r, self.stats
        info: dict = {"arrival_s": {}, "compute_s": {}, "sleep_s": {}, "wait_s": 0.0}
        if not any(now.plan):
            end = End(np.ones(self.n, dtype=bool), False, math.inf)
        else:
            state = RoundState(self.n, head_start=dict(now.head_start))
            end = self.arrivals.wait(OpenRound(r, now.plan, now.pending, state, info, now.t0,
                                               finished_at=dict(now.finished_at)))
            info["wait_s"] = self.clock.now() - now.t0
            stats.timings.wait += info["wait_s"]
        info["failures"] = stats.failures[now.failures_before:]
        tdec = self.clock.now()
        self.scheme.record(r, end.arrived)
        self.late.report()  # cut workers' results in by now: their times, before the decision
        self.reporter.observe(r, info)
        stats.timings.decode += self.clock.now() - tdec
        stats.waits += end.fell_back
        stats.stragglers_total += int((~end.arrived).sum())
        return end, info

    def _finish_round(self, now: Started, end: End, info: dict, start: float,
                      ahead: Started | None) -> None:
        """Decode and step every decodable job, check deadlines, evaluate, log round ``now.r``
        (while round r+1's workers compute, when it started ahead)."""
        r, T, stats = now.r, self.scheme.delay, self.stats
        busy = stats.timings.overhead()
        jobs_done = [self.jobs.finish(t) for t in range(max(0, r - T), r + 1)
                     if self.scheme.decodable(t)]
        for t in range(max(0, r - T), r + 1):
            if (self.scheme.job_exists(t) and self.scheme.decode_deadline(t) == r
                    and not self.scheme.is_decoded(t)):
                raise DecodeError(f"{self.scheme.name}: job {t} not decodable at its deadline "
                                  f"round {r}; the recorded stragglers broke the scheme's "
                                  f"guarantee")
        self.reducer.forget_before(r - T)
        if info["compute_s"]:
            stats.round_compute_s += float(np.mean(list(info["compute_s"].values())))
        info["evals"] = self._evaluate(r)
        self.dispatcher.forget_before(self.late.oldest(r + 1))
        if not any(now.plan):
            duration = 0.0
        elif ahead is not None:  # the round lasted until the next one started
            duration = ahead.round_start - now.round_start
        else:
            duration = self.clock.now() - now.round_start
        stats.durations.append(duration)
        info["next_started_early"] = ahead is not None
        self.held.append((r, now.plan, end, info, duration, jobs_done,
                          self.session.runtime_before + self.clock.now() - start,
                          self.late.take_cut_replies()))
        self._write_settled()
        if ahead is not None:
            if self.pipeline.may_issue_ahead(r + 2):  # round r+2's parameters, while r+1 runs
                ti = self.clock.now()
                self.jobs.issue(r + 2)
                stats.timings.issue += self.clock.now() - ti
            stats.timings.overlapped += stats.timings.overhead() - busy
            stats.pipelined += 1

    def _write_settled(self) -> None:
        """Write the held round records, in order, up to the first whose decoded jobs still
        await the plane's report of their step (the collective plane reports a step with the
        workers' next call)."""
        tl = self.clock.now()
        self.jobs.collect()
        while self.held and not self.jobs.awaits(self.held[0][5]):
            self.reporter.record(*self.held.pop(0))
        self.stats.timings.log += self.clock.now() - tl

    def _settle(self) -> None:
        """Every pending step applied and reported, every held record written."""
        self.reducer.settle()
        self._write_settled()

    def _checkpoint(self, r: int, start: float) -> None:
        self._settle()  # the replicas stepped and the records written up to the boundary
        tc = self.clock.now()
        self.session.checkpointer.save(self, r, self.session.runtime_before + (tc - start))
        self.stats.timings.checkpoint += self.clock.now() - tc

    # ---- held-out evaluation ----------------------------------------------------------------
    def _evaluate(self, r: int) -> list[dict]:
        """Every model's held-out loss (and accuracy), every ``train.eval_every`` rounds."""
        if self.eval_dataset is None or not self.eval_every or (r + 1) % self.eval_every:
            return []
        rows = self.models.evaluate(self.eval_dataset, self.stats.updates, round=r)
        self.stats.evals += rows
        return rows

    def final_evaluation(self) -> list[dict] | None:
        """Every model's held-out metrics at the end of the run (None without an eval set)."""
        if self.eval_dataset is None:
            return None
        return self.models.evaluate(self.eval_dataset, self.stats.updates)

    # ---- checkpoint -------------------------------------------------------------------------
    def state_dict(self, r: int, runtime_s: float) -> dict:
        """The run's state at the boundary before round ``r`` (late results of earlier rounds
        absorbed), one section per part: the tree :mod:`gcode.runtime.checkpoint` writes."""
        from ...codes.state import scheme_state
        return {
            "run": {**self.session.state_dict(runtime_s), "n": self.n, "models": self.models.M,
                    "num_params": self.num_params, "scheme": self.scheme.name},
            "scheme": scheme_state(self.scheme),
            "tuner": self.policy.state() if getattr(self.policy, "name", None) == "auto" else None,
            "coordinator": self.stats.state_dict(),
            "late": self.late.state_dict(),
            "jobs": self.jobs.state_dict(),
            "decoder": self.reducer.state_dict(),
            "delays": self.delays.state_dict(r),
            "models": self.models.state_dict(),
        }

    def load_state_dict(self, tree: dict, path: str) -> None:
        """Back to a checkpoint's :meth:`state_dict` (its scheme and tuner were restored before
        this coordinator was built); the next :meth:`run` starts at its round."""
        run = tree["run"]
        if (run["n"], run["models"], run["num_params"]) != (self.n, self.models.M, self.num_params):
            raise ValueError(f"n={run['n']}, models={run['models']}, num_params="
                             f"{run['num_params']} do not match this run's n={self.n}, models="
                             f"{self.models.M}, num_params={self.num_params}")
        self.models.load_state_dict(tree["models"])
        self.stats.load_state_dict(tree["coordinator"])
        self.late.load_state_dict(tree["late"])
        self.reducer.load_state_dict(tree["decoder"])
        self.jobs.load_state_dict(tree["jobs"])
        self.delays.load_state_dict(tree["delays"], self.n)
        self.session.load_state_dict(run, tree["round"], path)
