"""The collective data plane on the coordinator's side: the same :class:`Transport` and
:class:`Reducer` as the star plane (:mod:`gcode.runtime.transport.base`), the other way round.

* :class:`CollectiveTransport` ships no parameters: a job's handle is its chunk ranges, and a
  call names its jobs without data, so each worker computes on its replicas' copy of the job's
  parameters (:mod:`gcode.runtime.worker.replicas`). Calls, polls and fetches go through a
  :class:`RayTransport` it holds; results carry coded losses and timings, no gradient rows.
* :class:`CollectiveReducer` keeps which results arrived and their losses. Decoding job t sends
  each worker the coefficients of its own results; the workers fold a·m into job t's
  accumulator, allreduce it, and every replica steps model t mod M. No gradient reaches the
  coordinator: ``decode`` returns a :class:`PlaneStep` (rank 0's learning rate, gradient norm
  and clip factor), so the loop steps nothing itself. With ``check_decode`` rank 0 also sends
  its all-reduced sum and the job's parameters (two vectors per decode, counted in
  ``coordinator_bytes``), which the loop checks against a directly computed gradient as on the
  star plane. The
  coordinator's models are refreshed from a replica when they are read (checkpoint,
  evaluation, the end of the run: :meth:`CollectiveReducer.refresh`).

Invariants: every worker is asked for the same collectives in the same order (one decode at a
time, in the loop's order); a job's parameters are its model's replica at issue, taken before
the replica steps for any other job (delayed mode names the jobs in flight); replicas are
compared (a checksum allreduce) every :data:`CHECK_EVERY` decodes and at the end.

Faults (:meth:`CollectiveTransport.recover`): a worker that died (a call of it failed so, or it
was killed), or a decode whose collective failed or did not finish within the group's bound,
re-forms the group before the next decode: every worker leaves its group, one that does not
answer is restarted, a restarted actor builds its replicas and receives the replicas' state
(parameters, optimizer state, jobs in flight) from a surviving peer by a broadcast, and the
decode is repeated. Survivors kept their folded accumulators and results; a restarted worker
computes its results in that decode again (the decode request names their tasks), so the sum
is the one a fault-free run makes.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import numpy as np

from ...codes import MiniTask, ResultKey
from ..data import message_dtype
from ..errors import DivergedError
from ..transport.base import PlaneStep
from ..wire import UNPREPARED, Call, Result

#: decodes between two checks that every worker's replicas are bit-identical
CHECK_EVERY = 10
#: bytes of one (result key, coefficient, task) entry in a decode request, as it travels
PAIR_BYTES = 64
#: attempts at one decode when its collective fails (each after re-forming the group)
DECODE_ATTEMPTS = 3


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
        self.max_grad_norm = max_grad_norm
        self.issued: dict[int, JobRef] = {}
        self.generation = 0
        self.suspect: set[int] = set()  # workers seen dead since the group formed
        self.worker_of: dict[Any, int] = {}  # call handle -> worker
        self.stats.update(regroups=0, repeated_decodes=0)

    def start(self) -> None:
        """Every worker builds the replicas from the run's seed (they must agree at once), then
        the group forms."""
        import ray

        from . import GroupConfig, form_group
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
        form_group(self.actors, GroupConfig(self.backend, self.timeout_s), self.generation)

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
        if w in self.suspect:  # its process died: it needs the replicas and the group first
            self.recover()
        ctx_box = [self.star.ctx[1]] if send_ctx else None
        self.stats["ray_calls"] += 1
        handle = self.actors[w].compute.remote(call.encode(), ctx_box,
                                               *[(None, ref.bounds) for ref in jobs])
        self.worker_of[handle] = w
        return handle

    def kill(self, w: int) -> None:
        self.suspect.add(w)
        self.star.kill(w)

    def wait(self, calls: list, timeout: float) -> list:
        return self.star.wait(calls, timeout)

    def ready(self, calls: list) -> list:
        return self.star.ready(calls)

    def fetch(self, calls: list) -> list[tuple[Result | None, str | None]]:
        out = self.star.fetch(calls)
        for call, (result, reason) in zip(calls, out):
            w = self.worker_of.pop(call, None)
            lost = (reason is not None and reason.startswith("died")
                    or getattr(result, "status", None) == UNPREPARED)
            if lost and w is not None:  # the group lost it: re-form before the next collective
                self.suspect.add(w)
        return out

    def forget(self, calls: list) -> None:
        for call in calls:
            self.worker_of.pop(call, None)
        self.star.forget(calls)

    # ---- the workers' side of a decode -----------------------------------------------------
    def reduce(self, t: int, pairs: list[list], check: bool, scale: float, dtype: str,
               send_decoded: bool = False, unreached=()) -> list[dict]:
        """Every worker folds its ``pairs[w]`` (key, coefficient, task) of job t, allreduces
        and steps model t mod M (``unreached`` parameters get no ``.grad``, as on the star
        plane); ``check``: then the replicas are compared; ``send_decoded``:
        rank 0 replies with the sum and the job's parameters too. A failed collective
        re-forms the group and repeats the decode. Returns each worker's reply."""
        import ray
        m = self.model_of(t)
        snapshot = self.in_flight_on(m, t)
        for attempt in range(DECODE_ATTEMPTS):
            if self.suspect:
                self.recover()
            calls = [a.reduce_job.remote(t, m, pairs[w], snapshot, scale, check,
                                         self.issued[t].bounds, dtype, send_decoded and w == 0,
                                         list(unreached))
                     for w, a in enumerate(self.actors)]
            try:
                return ray.get(calls, timeout=self.timeout_s + 30)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError,
                    ray.exceptions.RayTaskError) as exc:
                if _replica_mismatch(exc):
                    raise RuntimeError(str(exc.cause)) from None
                if attempt + 1 == DECODE_ATTEMPTS:
                    raise RuntimeError(f"job {t}'s decode failed {DECODE_ATTEMPTS} times on the "
                                       f"collective plane; the last: "
                                       f"{' '.join(str(exc).split())[:300]}") from None
                self.suspect.update(range(len(self.actors)))  # who failed is told by recover
                self.stats["repeated_decodes"] += 1

    def recover(self) -> None:
        """Re-form the group (module docstring, "Faults"): leave, restart the unresponsive,
        rebuild the restarted actors' replicas, form generation g+1, broadcast the state of a
        surviving peer."""
        import ray

        from . import CollectiveError, GroupConfig, form_group, leave_group, wait_ready
        config = GroupConfig(self.backend, self.timeout_s)
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
        form_group(self.actors, config, self.generation)
        src = held.index(True)
        ray.get([a.sync_replicas.remote(src) for a in self.actors], timeout=self.timeout_s + 60)
        self.suspect.clear()
        self.stats["regroups"] += 1

    def check_replicas(self) -> dict:
        """{replica: checksum}, once every worker's replicas compared equal."""
        import ray
        return ray.get([a.check_replicas.remote() for a in self.actors],
                       timeout=self.timeout_s + 30)[0]

    def replica_state(self) -> list[dict]:
        """The M replicas and their optimizers' state as worker 0 holds them."""
        import ray
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
        """Job t summed and stepped on the workers (parameters ``unreached`` by every result
        left without a ``.grad``); returns (what rank 0's step did, its batch loss)."""
        pairs: list[list] = [[] for _ in self.transport.actors]
        loss = 0.0
        for key, coefficient in decoding:
            task = self.tasks[key]
            pairs[key.worker].append((tuple(key), float(coefficient),
                                      (tuple(task.chunks), tuple(task.coefficients))))
            loss += float(coefficient) * self.losses[key]
        self.decodes += 1
        check = self.decodes % CHECK_EVERY == 0
        replies = self.transport.reduce(t, pairs, check, 1.0 / self.batch_size,
                                        self.dtypes.get(t, "float64"), self.check_decode,
                                        unreached)
        first = replies[0]
        step = PlaneStep(first.get("lr"), first.get("grad_norm"), first.get("clip_factor", 1.0),
                         first.get("decoded"), first.get("params"))
        self.stats.coordinator_bytes += PAIR_BYTES * (len(decoding) + len(pairs)) + sum(
            a.nbytes for a in (step.decoded, step.params) if a is not None)
        self.stepped = True
        self.forget(t)
        if not all(r["finite"] for r in replies):
            m = self.transport.model_of(t)
            raise DivergedError(f"model {m} diverged: job {t}'s all-reduced gradient is not "
                                f"finite on the workers (lower the learning rate?)")
        return step, loss

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
