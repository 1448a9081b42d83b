"""The collective data plane on the coordinator's side: the same :class:`Transport` and
:class:`Reducer` as the star plane (:mod:`gcode.runtime.transport.base`), the other way round.

* :class:`CollectiveTransport` ships no parameters: a job's handle is its chunk ranges, and a
  call names its jobs without data, so each worker computes on its replicas' copy of the job's
  parameters (:mod:`gcode.runtime.worker.replicas`). Calls, polls and fetches go through a
  :class:`RayTransport` it holds; results carry coded losses and timings, no gradient rows.
* :class:`~gcode.runtime.collective.reducer.CollectiveReducer` (its own module) keeps which
  results arrived and their losses. Decoding job t queues, for every worker, the coefficients
  of its own results (:meth:`CollectiveTransport.defer`, a few hundred bytes); no gradient
  reaches the coordinator, and ``decode`` returns a pending :class:`PlaneStep`, so the loop
  steps nothing itself and blocks on no collective.

Decodes ride on the next calls. Each decode is numbered (``seq``) and goes to each worker with
that worker's next compute call, so a round costs one Ray call per worker. The worker applies
every decode numbered up to the call's ``upto`` first, in their numbers' order whatever order
the calls ran in (fold a·m into job t's accumulator, allreduce it, step replica t mod M, on its
communication thread), then computes on the stepped replicas; the call's result carries each
decode's report (rank 0's learning rate, gradient norm and clip factor, whether the sum was
finite), which completes job t's round record (:meth:`gcode.runtime.loop.jobs.JobBook.collect`).
A straggler still computing an older call enters the allreduce at once: the new call runs the
decode on the communication thread while the compute thread works.

Pushed decodes (dispatch at arrival): a worker sent its next call at its arrival is computing
when the round decodes; riding on its call after next, the decode would run a round late and
every worker would wait out the next round's stragglers. So a worker with a call in flight gets
the decode at once by a call of its own; :meth:`fetch` reads the replies.

Before the replicas are read (a checkpoint, an evaluation, the end of the run) the coordinator
settles every queued decode with one call per worker (:meth:`CollectiveTransport.settle`); with
``check_decode`` it does so at each decode, and rank 0 also sends its all-reduced sum and the
job's parameters (two vectors per decode, counted in ``coordinator_bytes``), which the loop
checks against a directly computed gradient as on the star plane. The coordinator's models are
refreshed from a replica when they are read (:meth:`CollectiveReducer.refresh`).

Invariants: every worker applies the same decodes in the same order (their numbers), so every
worker does the same collectives in the same order; a job's parameters are its model's replica
when the worker first computes it, which is after every decode issued before its call (the
call's ``upto``); in delayed mode a decode names the jobs in flight on its model, whose
parameters are taken before the replica steps; replicas are compared (a checksum allreduce)
every :data:`~gcode.runtime.collective.reducer.CHECK_EVERY` decodes and at the end.

Faults (:meth:`CollectiveTransport.recover`): a worker that died (a call of it failed so, or it
was killed), or a call or settle whose collective failed or did not finish within the group's
bound, re-forms the group before the next call: every worker leaves its group, one that does
not answer is restarted, a restarted actor builds its replicas and receives the replicas' state
(parameters, optimizer state, jobs in flight, jobs stepped) from a surviving peer by a
broadcast, and every decode not known applied on every worker is repeated in order (a replica
that stepped a job already skips it; with ``check_decode`` that peer sends the sums it kept).
Survivors kept their accumulators and results; a restarted worker computes its results again
(the request names their tasks), so the sum is a fault-free run's. A call of an older
generation computes nothing. With ``zero=1`` (:mod:`.sharding`) a fault stops the run instead,
naming the last checkpoint: each worker held the only copy of its optimizer-state shards.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import numpy as np

from ..wire import STALE, UNPREPARED, Call, Result
from .replica_calls import ReplicaCalls
from .replicas import caused_by_mismatch

#: attempts at settling the decodes when a collective fails (each after re-forming the group)
DECODE_ATTEMPTS = 3
#: failure reasons (``failure_kind``) of a call whose collective failed: the group must re-form
COLLECTIVE_FAILURES = ("raised CollectiveError", "raised StaleGeneration")
#: the failure reason of a call that failed, or gave up, in a group generation re-formed since
OUTLIVED = "outlived its group generation"


class JobRef(NamedTuple):
    """A job's handle on the collective plane: its chunk ranges (its parameters stay on the
    workers)."""

    job: int
    bounds: tuple


class CollectiveTransport:
    """Calls without parameters through Ray; the workers' group and replicas behind them."""

    name = "collective"
    carries_gradients = False

    def __init__(self, actors: list, ray_transport, models: int, delayed: bool,
                 accumulate_dtype: str, backend: str, timeout_s: float,
                 max_grad_norm: float | None = None, push_decodes: bool = False, zero: int = 0):
        self.actors, self.star = actors, ray_transport
        self.stats = ray_transport.stats
        self.models, self.delayed = models, delayed
        self.accumulate_dtype, self.backend, self.timeout_s = accumulate_dtype, backend, timeout_s
        #: a collective's bound: half the round's, since a round's calls run their decodes, so
        #: that a peer that never enters one fails the collective (and the group re-forms)
        #: before the round that waits on it fails
        from .group import GroupConfig
        self.group = GroupConfig(backend, timeout_s / 2)
        self.max_grad_norm, self.push_decodes, self.zero = max_grad_norm, push_decodes, zero
        #: how to continue after a failure the plane cannot repair (the run's last checkpoint)
        self.resume_hint = str
        self.pushes: dict[Any, tuple[int, int]] = {}  # a decode pushed ahead -> (worker, generation)
        self.issued: dict[int, JobRef] = {}
        self.generation = 0
        self.suspect: set[int] = set()  # workers seen dead since the group formed
        self.worker_of: dict[Any, tuple[int, int]] = {}  # call handle -> (worker, generation)
        self.stats.update(regroups=0, repeated_decodes=0, settles=0, pushed_decodes=0)
        n = len(actors)
        self.seq = 0  # the next decode's number
        self.last_on: dict[int, int] = {}  # model -> the number of its last decode
        self.outbox: dict[int, list[dict]] = {w: [] for w in range(n)}  # decodes for w's next call
        self.unacked: list[list[dict]] = []  # decodes (one request per worker) not applied everywhere
        self.applied = [0] * n  # worker -> decodes numbered below this are applied there
        self.unreported: set[int] = set()  # jobs whose decode was issued, report not yet taken
        self.reports: dict[int, dict] = {}  # job -> a worker's report of its step, not yet taken
        self.phases: dict[str, float] = {}  # a worker's seconds by phase, summed over reports
        self.replicas = ReplicaCalls(actors, timeout_s, self.settle, gathered=bool(zero))

    def start(self) -> None:
        """Every worker builds the replicas from the run's seed (they must agree at once), then
        the group forms."""
        import ray

        from . import form_group
        ctx_id, spec_ref = self.star.ctx
        replies = ray.get([a.join_collective.remote(ctx_id, [spec_ref], self.models, self.delayed,
                                                    self.accumulate_dtype, self.max_grad_norm,
                                                    self.zero)
                           for a in self.actors],
                          timeout=self.timeout_s + 60)
        first = replies[0]["checksums"]
        odd = [r["worker"] for r in replies if r["checksums"] != first]
        if odd:
            raise RuntimeError(f"workers {odd} built replicas that differ from worker 0's: "
                               f"model_fn must build the same model from the same seed in every "
                               f"process")
        form_group(self.actors, self.group, self.generation)

    def model_of(self, t: int) -> int:
        return 0 if self.delayed else t % self.models

    # ---- ship job data -------------------------------------------------------------------
    def put_job(self, t: int, params: Any, bounds: tuple) -> JobRef:
        """Job t's chunk ranges; its parameters are the replicas' (``params`` is not sent)."""
        ref = self.issued[t] = JobRef(int(t), bounds)
        return ref

    def job_params(self, handle: JobRef) -> np.ndarray:
        """Job t's parameters as worker 0's replicas hold them (checks and checkpoints)."""
        import ray
        self.settle()
        return ray.get(self.actors[0].job_params.remote(handle.job), timeout=self.timeout_s)

    def release_job(self, handle: JobRef) -> None:
        self.issued.pop(handle.job, None)

    def in_flight_on(self, model: int, but: int) -> list[int]:
        """Jobs issued on ``model`` other than ``but``, not yet decoded (delayed mode)."""
        return sorted(t for t in self.issued if t != but and self.model_of(t) == model)

    # ---- calls, polls, fetches: through Ray ---------------------------------------------
    def reserve_results(self, workers: int, per_worker: int, nbytes: int) -> None:
        """Results stay on the workers: nothing to reserve."""

    def call(self, w: int, call: Call, send_ctx: bool, jobs: list, result_bytes: int = 0) -> Any:
        """Worker w's call, carrying the decodes issued since its last one (module docstring,
        "Decodes"). A worker seen dead, or a failed collective, re-forms the group first."""
        if self.suspect:  # the group lost a member: re-form it before anyone enters a collective
            self.recover()
        ctx_box = [self.star.ctx[1]] if send_ctx else None
        decodes, self.outbox[w] = self.outbox[w], []
        self.stats["ray_calls"] += 1
        handle = self.actors[w].compute.remote(
            call.encode(), ctx_box, *[(None, ref.bounds) for ref in jobs],
            plane={"decodes": decodes, "upto": self.needed_by(jobs), "generation": self.generation})
        self.worker_of[handle] = (w, self.generation)
        return handle

    def needed_by(self, jobs: list) -> int:
        """The number of the last decode issued on a model these jobs compute on (every decode
        in delayed mode): the call waits for it, and computes while later ones, on other
        models, run (with M >= 2 the allreduce of job t overlaps the compute of job t+1)."""
        if self.delayed:
            return self.seq - 1
        return max((self.last_on.get(self.model_of(ref.job), -1) for ref in jobs), default=-1)

    def kill(self, w: int) -> None:
        self.suspect.add(w)
        self.star.kill(w)

    def wait(self, calls: list, timeout: float) -> list:
        return self.star.wait(calls, timeout)

    def ready(self, calls: list) -> list:
        return self.star.ready(calls)

    def fetch(self, calls: list) -> list[tuple[Result | None, str | None]]:
        """The calls' results (the star's fetch), taking in the decodes' reports they carry. A
        worker lost (dead, or restarted without the replicas) or a collective that failed in a
        call makes the group re-form before the next call."""
        out = self.star.fetch(calls)
        if self.pushes:
            self._read_pushes(self.star.ready(list(self.pushes)))
        for i, (call, (result, reason)) in enumerate(zip(calls, out)):
            w, generation = self.worker_of.pop(call, (None, self.generation))
            if w is not None and getattr(result, "steps", None) is not None:
                self._note_steps(w, result.steps)
            lost = (reason is not None and reason.startswith("died")
                    or getattr(result, "status", None) == UNPREPARED)
            if lost and w is not None:  # the group lost it: re-form before the next collective
                self.suspect.add(w)
            if generation != self.generation and (reason is not None
                                                  or getattr(result, "status", None) == STALE):
                # the group re-formed under it (its decodes were repeated there): sent again
                out[i] = (None, f"{OUTLIVED} {generation} ({reason or 'stale'})")
            elif self.group_failure(reason):
                self.suspect.update(range(len(self.actors)))  # recover() tells who failed
        return out

    @staticmethod
    def group_failure(reason) -> bool:
        """Whether a call failed because a collective did (the group re-forms before the next
        call, which may be sent at once), not because its worker did."""
        return isinstance(reason, str) and reason.startswith((*COLLECTIVE_FAILURES, OUTLIVED))

    def forget(self, calls: list) -> None:
        for call in calls:
            self.worker_of.pop(call, None)
        self.star.forget(calls)

    # ---- the workers' side of a decode -----------------------------------------------------
    def defer(self, t: int, pairs: list[list], check: bool, scale: float, dtype: str,
              send_decoded: bool = False, unreached=()) -> None:
        """Number job t's decode and queue it for every worker's next call: worker w folds its
        ``pairs[w]`` (key, coefficient, task), the group allreduces and every replica steps
        model t mod M (``unreached`` parameters get no ``.grad``, as on the star plane);
        ``check``: then the replicas are compared; ``send_decoded``: rank 0's report carries
        the sum and the job's parameters too, and every rank keeps them a while (a repeated
        decode's are sent by a surviving rank: :meth:`recover`)."""
        m = self.model_of(t)
        snapshot = self.in_flight_on(m, t)
        seq, self.seq = self.seq, self.seq + 1
        self.last_on[m] = seq
        each = [{"seq": seq, "job": int(t), "model": m, "pairs": pairs[w], "snapshot": snapshot,
                 "scale": scale, "check": check, "bounds": self.issued[t].bounds, "dtype": dtype,
                 "send_decoded": send_decoded and w == 0, "gather_sum": send_decoded,
                 "unreached": list(unreached)}
                for w in range(len(self.actors))]
        for w, decode in enumerate(each):
            self.outbox[w].append(decode)
        self.unacked.append(each)
        self.unreported.add(int(t))
        if self.push_decodes:
            self._push_to_busy()

    def _push_to_busy(self) -> None:
        """Dispatch at arrival (module docstring, "Pushed decodes"): each worker with a call in
        flight gets its queued decodes now, by a call that waits for none (``upto`` -1)."""
        busy = {w for w, generation in self.worker_of.values() if generation == self.generation}
        for w in sorted(busy):
            decodes, self.outbox[w] = self.outbox[w], []
            if decodes:
                handle = self.actors[w].apply_decodes.remote(decodes, -1, self.generation)
                self.pushes[handle] = (w, self.generation)
                self.stats["ray_calls"] += 1
                self.stats["pushed_decodes"] += len(decodes)

    def _read_pushes(self, done: list) -> None:
        """Reports of the pushes that answered; one failed in this generation re-forms the group."""
        import ray
        for handle in done:
            w, generation = self.pushes.pop(handle)
            try:
                self._note_steps(w, ray.get(handle, timeout=0))
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError,
                    ray.exceptions.GetTimeoutError):
                if generation == self.generation:
                    self.suspect.update(range(len(self.actors)))  # recover() tells who failed

    def settle(self) -> None:
        """Every decode issued so far applied on every worker, and its report here: before the
        replicas are read (a checkpoint, an evaluation, the end) or a decode is checked. A
        failed collective re-forms the group, which repeats the decodes (:meth:`recover`)."""
        import ray
        if not self.unacked and self.unreported <= set(self.reports):
            return
        for attempt in range(DECODE_ATTEMPTS):
            if self.suspect:
                self.recover()
                if not self.unacked and self.unreported <= set(self.reports):
                    return
            decodes, self.outbox = self.outbox, {w: [] for w in range(len(self.actors))}
            want = sorted(self.unreported - set(self.reports))  # reports lost with their calls
            self.stats["settles"] += 1
            calls = [a.apply_decodes.remote(decodes[w], self.seq - 1, self.generation, want=want)
                     for w, a in enumerate(self.actors)]
            try:
                replies = ray.get(calls, timeout=self.timeout_s + 30)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError,
                    ray.exceptions.RayTaskError) as exc:
                if caused_by_mismatch(exc):
                    raise RuntimeError(str(exc.cause)) from None
                if attempt + 1 == DECODE_ATTEMPTS:
                    raise RuntimeError(f"the collective plane's decodes failed {DECODE_ATTEMPTS} "
                                       f"times; the last: {' '.join(str(exc).split())[:300]}"
                                       ) from None
                self.suspect.update(range(len(self.actors)))  # who failed is told by recover
                continue
            for w, steps in enumerate(replies):
                self._note_steps(w, steps)
            return

    def _note_steps(self, w: int, steps: dict) -> None:
        """Worker w applied every decode numbered below ``steps["applied"]``; keep the reports
        (any worker's: every replica steps alike; rank 0's carries the sum when asked)."""
        self.applied[w] = max(self.applied[w], int(steps["applied"]))
        for report in steps["reports"]:
            job = int(report["job"])
            if job in self.unreported and (job not in self.reports or "decoded" in report):
                self.reports[job] = report
            if "phases" in report and not report.get("repeated"):
                for name, seconds in report["phases"].items():
                    self.phases[name] = self.phases.get(name, 0.0) + seconds
                self.phases["reports"] = self.phases.get("reports", 0) + 1
        everywhere = min(self.applied)
        self.unacked = [each for each in self.unacked if each[0]["seq"] >= everywhere]

    def take_report(self, t: int) -> dict | None:
        """Job t's report, once a worker sent it (None before)."""
        report = self.reports.pop(t, None)
        if report is not None:
            self.unreported.discard(t)
        return report

    def phases_per_decode(self) -> dict[str, float] | None:
        """A worker's mean seconds per decode by phase (snapshot and recompute, fold, allreduce,
        step, check), None before any report."""
        n = self.phases.get("reports", 0)
        return {k: v / n for k, v in self.phases.items() if k != "reports"} if n else None

    def recover(self) -> None:
        """Re-form the group (module docstring, "Faults"): leave, restart the unresponsive,
        rebuild the restarted actors' replicas, form generation g+1, broadcast the state of a
        surviving peer."""
        import ray

        from . import CollectiveError, form_group, leave_group, wait_ready
        if self.zero:  # a dead worker took the only copy of its shards
            from .sharding import lost_shards
            raise lost_shards(self.resume_hint())
        for rank in leave_group(self.actors, 30.0):  # hung in a collective, or raised
            with contextlib.suppress(Exception):
                ray.kill(self.actors[rank], no_restart=False)
        wait_ready(self.actors, lambda a: a.ready.remote(), self.timeout_s + 60)
        ctx_id, spec_ref = self.star.ctx
        held = ray.get([a.has_replicas.remote(ctx_id) for a in self.actors], timeout=60)
        fresh = [w for w, ok in enumerate(held) if not ok]
        if len(fresh) == len(self.actors):
            raise CollectiveError("every worker lost the replicas: the run cannot continue "
                                  "(resume it from its last checkpoint)")
        ray.get([self.actors[w].join_collective.remote(ctx_id, [spec_ref], self.models,
                                                       self.delayed, self.accumulate_dtype,
                                                       self.max_grad_norm, self.zero)
                 for w in fresh], timeout=self.timeout_s + 60)
        self.generation += 1
        form_group(self.actors, self.group, self.generation)
        src = held.index(True)
        ray.get([a.sync_replicas.remote(src) for a in self.actors], timeout=self.timeout_s + 60)
        self.suspect.clear()
        self.stats["regroups"] += 1
        # every replica is now src's: repeat the decodes not known applied everywhere (those
        # src stepped are skipped, and src, which kept their sums, sends those checked), and
        # number the next ones on from here
        unacked = [[{**d, "send_decoded": d["gather_sum"] and w == src} for w, d in enumerate(each)]
                   for each in self.unacked]
        self.unacked = []
        self.outbox = {w: [] for w in range(len(self.actors))}
        self.pushes.clear()  # of an older generation: repeated below
        replies = ray.get([a.apply_decodes.remote([each[w] for each in unacked], self.seq - 1,
                                                  self.generation, True)
                           for w, a in enumerate(self.actors)], timeout=self.timeout_s + 60)
        self.stats["repeated_decodes"] += len(unacked)
        self.applied = [self.seq] * len(self.actors)
        for w, steps in enumerate(replies):
            self._note_steps(w, steps)

    def close(self) -> None:
        """Every worker leaves the group and drops its replicas (best effort: a dead one is
        gone anyway)."""
        import ray
        calls = [a.leave_collective.remote() for a in self.actors]
        ray.wait(calls, num_returns=len(calls), timeout=30)
        self.star.close()
