"""The collective data plane on the coordinator's side: the same :class:`Transport` and
:class:`Reducer` as the star plane (:mod:`gcode.runtime.transport.base`), the other way round.

* :class:`CollectiveTransport` ships no parameters: a job's handle is its chunk ranges, and a
  call names its jobs without data, so each worker computes on its replicas' copy of the job's
  parameters (:mod:`gcode.runtime.worker.replicas`). Calls, polls and fetches go through a
  :class:`RayTransport` it holds; results carry coded losses and timings, no gradient rows.
* :class:`CollectiveReducer` keeps which results arrived and their losses. Decoding job t
  queues, for every worker, the coefficients of its own results (:meth:`CollectiveTransport.defer`,
  a few hundred bytes); no gradient reaches the coordinator, and ``decode`` returns a pending
  :class:`PlaneStep`, so the loop steps nothing itself and blocks on no collective.

Decodes ride on the next calls. Each decode is numbered (``seq``) and goes to each worker with
that worker's next compute call, so a round costs one Ray call per worker. The worker applies
every decode numbered up to the call's ``upto`` first, in their numbers' order whatever order
the calls ran in (fold a·m into job t's accumulator, allreduce it, step replica t mod M, on its
communication thread), then computes on the stepped replicas; the call's result carries each
decode's report (rank 0's learning rate, gradient norm and clip factor, whether the sum was
finite), which completes job t's round record (:meth:`gcode.runtime.loop.jobs.JobBook.collect`).
A straggler still computing an older call enters the allreduce at once: the new call runs the
decode on the communication thread while the compute thread works. Before the replicas are read
(a checkpoint, an evaluation, the end of the run) the coordinator settles every queued decode
with one call per worker (:meth:`CollectiveTransport.settle`); with ``check_decode`` it does so
at each decode, and rank 0 also sends its all-reduced sum and the job's parameters (two vectors
per decode, counted in ``coordinator_bytes``), which the loop checks against a directly computed
gradient as on the star plane. The coordinator's models are refreshed from a replica when they
are read (:meth:`CollectiveReducer.refresh`).

Invariants: every worker applies the same decodes in the same order (their numbers), so every
worker does the same collectives in the same order; a job's parameters are its model's replica
when the worker first computes it, which is after every decode issued before its call (the
call's ``upto``); in delayed mode a decode names the jobs in flight on its model, whose
parameters are taken before the replica steps; replicas are compared (a checksum allreduce)
every :data:`CHECK_EVERY` decodes and at the end.

Faults (:meth:`CollectiveTransport.recover`): a worker that died (a call of it failed so, or it
was killed), or a call or settle whose collective failed or did not finish within the group's
bound, re-forms the group before the next call: every worker leaves its group, one that does
not answer is restarted, a restarted actor builds its replicas and receives the replicas' state
(parameters, optimizer state, jobs in flight, jobs stepped) from a surviving peer by a
broadcast, and every decode not known applied on every worker is repeated in order (a replica
that stepped a job already skips it). Survivors kept their folded accumulators and results; a
restarted worker computes its results in a decode again (the request names their tasks), so the
sum is the one a fault-free run makes. A call of an older generation computes nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import numpy as np

from ...codes import MiniTask, ResultKey
from ..data import message_dtype
from ..errors import DivergedError
from ..transport.base import PlaneStep
from ..wire import STALE, UNPREPARED, Call, Result

#: decodes between two checks that every worker's replicas are bit-identical
CHECK_EVERY = 10
#: bytes of one (result key, coefficient, task) entry in a decode request, as it travels
PAIR_BYTES = 64
#: attempts at settling the decodes when a collective fails (each after re-forming the group)
DECODE_ATTEMPTS = 3
#: failure reasons (``failure_kind``) of a call whose collective failed: the group must re-form
COLLECTIVE_FAILURES = ("raised CollectiveError", "raised StaleGeneration")
#: the failure reason of a call that failed, or gave up, in a group generation re-formed since
OUTLIVED = "outlived its group generation"


def _replica_mismatch(exc: BaseException) -> bool:
    """Whether a worker's call failed because its replicas differ from its peers'."""
    from .replicas import ReplicaMismatch
    return isinstance(getattr(exc, "cause", None), ReplicaMismatch)


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
                 max_grad_norm: float | None = None):
        self.actors, self.star = actors, ray_transport
        self.stats = ray_transport.stats
        self.models, self.delayed = models, delayed
        self.accumulate_dtype, self.backend, self.timeout_s = accumulate_dtype, backend, timeout_s
        #: a collective's bound: half the round's, since a round's calls run their decodes, so
        #: that a peer that never enters one fails the collective (and the group re-forms)
        #: before the round that waits on it fails
        from .group import GroupConfig
        self.group = GroupConfig(backend, timeout_s / 2)
        self.max_grad_norm = max_grad_norm
        self.issued: dict[int, JobRef] = {}
        self.generation = 0
        self.suspect: set[int] = set()  # workers seen dead since the group formed
        self.worker_of: dict[Any, tuple[int, int]] = {}  # call handle -> (worker, generation)
        self.stats.update(regroups=0, repeated_decodes=0, settles=0)
        n = len(actors)
        self.seq = 0  # the next decode's number
        self.last_on: dict[int, int] = {}  # model -> the number of its last decode
        self.outbox: dict[int, list[dict]] = {w: [] for w in range(n)}  # decodes for w's next call
        self.unacked: list[list[dict]] = []  # decodes (one request per worker) not applied everywhere
        self.applied = [0] * n  # worker -> decodes numbered below this are applied there
        self.unreported: set[int] = set()  # jobs whose decode was issued, report not yet taken
        self.reports: dict[int, dict] = {}  # job -> a worker's report of its step, not yet taken
        self.phases: dict[str, float] = {}  # a worker's seconds by phase, summed over reports

    def start(self) -> None:
        """Every worker builds the replicas from the run's seed (they must agree at once), then
        the group forms."""
        import ray

        from . import form_group
        ctx_id, spec_ref = self.star.ctx
        replies = ray.get([a.join_collective.remote(ctx_id, [spec_ref], self.models, self.delayed,
                                                    self.accumulate_dtype, self.max_grad_norm)
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
        the sum and the job's parameters too."""
        m = self.model_of(t)
        snapshot = self.in_flight_on(m, t)
        seq, self.seq = self.seq, self.seq + 1
        self.last_on[m] = seq
        each = [{"seq": seq, "job": int(t), "model": m, "pairs": pairs[w], "snapshot": snapshot,
                 "scale": scale, "check": check, "bounds": self.issued[t].bounds, "dtype": dtype,
                 "send_decoded": send_decoded and w == 0, "unreached": list(unreached)}
                for w in range(len(self.actors))]
        for w, decode in enumerate(each):
            self.outbox[w].append(decode)
        self.unacked.append(each)
        self.unreported.add(int(t))

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
                if _replica_mismatch(exc):
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
        for rank in leave_group(self.actors, 30.0):  # no answer: dead, or hung in a collective
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
                                                       self.max_grad_norm)
                 for w in fresh], timeout=self.timeout_s + 60)
        self.generation += 1
        form_group(self.actors, self.group, self.generation)
        src = held.index(True)
        ray.get([a.sync_replicas.remote(src) for a in self.actors], timeout=self.timeout_s + 60)
        self.suspect.clear()
        self.stats["regroups"] += 1
        # every replica is now src's: repeat the decodes not known applied everywhere (those
        # src stepped are skipped), and number the next ones on from here
        unacked, self.unacked = self.unacked, []
        self.outbox = {w: [] for w in range(len(self.actors))}
        replies = ray.get([a.apply_decodes.remote([each[w] for each in unacked], self.seq - 1,
                                                  self.generation, True)
                           for w, a in enumerate(self.actors)], timeout=self.timeout_s + 60)
        self.stats["repeated_decodes"] += len(unacked)
        self.applied = [self.seq] * len(self.actors)
        for w, steps in enumerate(replies):
            self._note_steps(w, steps)

    def check_replicas(self) -> dict:
        """{replica: checksum}, once every worker's replicas compared equal."""
        import ray
        self.settle()
        return ray.get([a.check_replicas.remote() for a in self.actors],
                       timeout=self.timeout_s + 30)[0]

    def replica_state(self) -> list[dict]:
        """The M replicas and their optimizers' state as worker 0 holds them."""
        import ray
        self.settle()
        return ray.get(self.actors[0].replica_state.remote(), timeout=self.timeout_s + 30)

    def load_replicas(self, state: list[dict]) -> None:
        """Every worker's replicas from ``state`` (a checkpoint's models)."""
        import ray
        ref = ray.put(state)
        ray.get([a.load_replicas.remote(ref) for a in self.actors], timeout=self.timeout_s + 30)

    def kept_results(self, keys: list[ResultKey]) -> dict[ResultKey, np.ndarray]:
        """The workers' kept results ``keys`` (a checkpoint's jobs in flight)."""
        import ray
        by_worker: dict[int, list] = {}
        for key in keys:
            by_worker.setdefault(key.worker, []).append(key)
        arrays = ray.get([self.actors[w].kept_results.remote([tuple(k) for k in ks])
                          for w, ks in by_worker.items()], timeout=self.timeout_s + 30)
        return {k: a for ks, got in zip(by_worker.values(), arrays) for k, a in zip(ks, got)}

    def keep_results(self, items: list[tuple[ResultKey, int, np.ndarray]]) -> None:
        """Give each worker its results back (a checkpoint's, on resume)."""
        import ray
        by_worker: dict[int, list] = {}
        for key, job, array in items:
            by_worker.setdefault(key.worker, []).append((tuple(key), job, array))
        ray.get([self.actors[w].keep_results.remote(it) for w, it in by_worker.items()],
                timeout=self.timeout_s + 30)

    def close(self) -> None:
        """Every worker leaves the group and drops its replicas (best effort: a dead one is
        gone anyway)."""
        import ray
        calls = [a.leave_collective.remote() for a in self.actors]
        ray.wait(calls, num_returns=len(calls), timeout=30)
        self.star.close()


class CollectiveReducer:
    """The collective plane's :class:`Reducer`: results stay on the workers; the coordinator
    keeps their coded losses and asks the workers to sum and step (module docstring)."""

    on_device = False

    def __init__(self, transport: CollectiveTransport, stats, batch_size: int, scheme,
                 check_decode: bool = False, exact_blocks: int = 0):
        self.transport, self.stats, self.batch_size = transport, stats, batch_size
        self.scheme, self.check_decode = scheme, check_decode
        self.message_dtype = message_dtype(scheme, exact_blocks).name
        self.losses: dict[ResultKey, float] = {}
        self.tasks: dict[ResultKey, MiniTask] = {}
        self.dtypes: dict[int, str] = {}  # job -> message dtype (to compute a lost result again)
        self.decodes = 0
        self.stepped = False  # the replicas stepped since the coordinator's models were read

    def stage(self, array: Any, threads: int = 1) -> tuple[Any, Any, Any]:
        return array, True, None  # results carry no gradient rows: nothing is staged

    def add(self, key: ResultKey, task: MiniTask, array: Any, loss: float = 0.0) -> None:
        self.losses.setdefault(key, float(loss))
        self.tasks.setdefault(key, task)
        self.dtypes.setdefault(task.job, self.message_dtype)

    def discard(self, keys: Any) -> None:
        for key in keys:
            self.losses.pop(key, None)
            self.tasks.pop(key, None)

    def flush(self, min_pending: int | None = None) -> None:
        """Workers fold when the coefficients come: nothing to do ahead."""

    def decode(self, t: int, decoding: list, unreached=()) -> tuple[PlaneStep, float]:
        """Job t's decode, queued for the workers' next calls (they sum and step before they
        compute; parameters ``unreached`` by every result are left without a ``.grad``);
        returns (a pending step, its batch loss). With ``check_decode`` the workers apply it
        now and the step is rank 0's, with the sum to check."""
        pairs: list[list] = [[] for _ in self.transport.actors]
        loss = 0.0
        for key, coefficient in decoding:
            task = self.tasks[key]
            pairs[key.worker].append((tuple(key), float(coefficient),
                                      (tuple(task.chunks), tuple(task.coefficients))))
            loss += float(coefficient) * self.losses[key]
        self.decodes += 1
        self.transport.defer(t, pairs, self.decodes % CHECK_EVERY == 0, 1.0 / self.batch_size,
                             self.dtypes.get(t, "float64"), self.check_decode, unreached)
        self.stats.coordinator_bytes += PAIR_BYTES * (len(decoding) + len(pairs))
        self.stepped = True
        self.forget(t)
        if not self.check_decode:
            return PlaneStep(pending=True), loss
        self.transport.settle()
        return self.step_of(t), loss

    def step_of(self, t: int) -> PlaneStep | None:
        """Job t's step as a worker reported it (None before a report came)."""
        report = self.transport.take_report(t)
        if report is None:
            return None
        if not report["finite"]:
            m = self.transport.model_of(t)
            raise DivergedError(f"model {m} diverged: job {t}'s all-reduced gradient is not "
                                f"finite on the workers (lower the learning rate?)")
        step = PlaneStep(report.get("lr"), report.get("grad_norm"), report.get("clip_factor", 1.0),
                         report.get("decoded"), report.get("params"))
        self.stats.coordinator_bytes += sum(a.nbytes for a in (step.decoded, step.params)
                                            if a is not None)
        return step

    def settle(self) -> None:
        """Every decode queued applied on the workers (their reports then come in)."""
        self.transport.settle()

    def forget(self, t: int) -> None:
        self.dtypes.pop(t, None)
        for key in [k for k, task in self.tasks.items() if task.job == t]:
            del self.losses[key], self.tasks[key]

    def forget_before(self, t: int) -> None:
        for key in [k for k, task in self.tasks.items() if task.job < t]:
            del self.losses[key], self.tasks[key]

    # ---- the coordinator's models ------------------------------------------------------------
    def refresh(self, bank) -> None:
        """Load the replicas' state into the coordinator's ``bank`` when they stepped since."""
        if self.stepped:
            self.stepped = False
            bank.load_state_dict(self.transport.replica_state(), to_replicas=False)

    def push(self, state: list[dict]) -> None:
        """A state loaded into the coordinator's models goes to every replica (a resume)."""
        self.transport.load_replicas(state)

    def check_replicas(self) -> dict:
        """{replica: checksum} once every worker's replicas compared bit-identical."""
        return self.transport.check_replicas()

    # ---- checkpoint: the star's Decoder format, so either plane resumes either -------------
    def state_dict(self) -> dict:
        """The stored results of jobs in flight (fetched from the workers that keep them) in
        :meth:`gcode.runtime.loop.decode.Decoder.state_dict`'s form, without accumulators."""
        from ..loop.decode import signature
        arrays = self.transport.kept_results(list(self.losses))
        jobs: dict[int, list] = {}
        for key, task in self.tasks.items():
            jobs.setdefault(task.job, []).append(tuple(key))
        return {"streaming": False, "streamed": 0, "fallbacks": 0,
                "results": [[tuple(key), signature(self.tasks[key]), arrays[key], loss]
                            for key, loss in self.losses.items()],
                "jobs": [[t, {"acc": None, "loss": 0.0, "folded": [], "keys": sorted(keys)}]
                         for t, keys in sorted(jobs.items())]}

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's stored results: losses here, arrays back to the workers that made
        them. Results a star run had already folded into an accumulator are not in it, so
        such a checkpoint resumes on the star plane only."""
        if any(job["acc"] is not None for _, job in state["jobs"]):
            raise ValueError("this checkpoint holds partial sums of the star plane's decoder; "
                             "resume it with cluster.data_plane = star")
        items = []
        for key, sig, array, loss in state["results"]:
            k = ResultKey(*key)
            job, chunks, coefficients = sig
            self.tasks[k] = MiniTask(job=int(job), slot=k.slot, chunks=tuple(chunks),
                                     coefficients=tuple(coefficients))
            self.losses[k] = float(loss)
            self.dtypes[int(job)] = np.asarray(array).dtype.name
            items.append((k, int(job), np.asarray(array)))
        self.transport.keep_results(items)
