"""The worker actor: computes coded partial gradients with torch, tagged by round.

It is an *async* Ray actor, so a straggler's old task never blocks a newer round:

* every call carries its round r; the newest round seen is ``latest``;
* a call for a newer round wakes the older calls, which drop their work and return
  ``{"status": "stale"}`` (they yield between mini-tasks and during the injected sleep);
* compute runs in the actor's event loop one mini-task at a time, so at most one mini-task of
  stale compute (milliseconds) delays a newer round.

A call and its result are :class:`gcode.runtime.wire.Call` and :class:`~gcode.runtime.wire.Result`
(one gradient row per task in the message dtype, coded losses, tags, compute and sleep times).

On the collective data plane (:mod:`gcode.runtime.worker.replicas`) the worker computes on its
replicas' copy of each job's parameters, on a compute thread of its own, keeps its coded results
and answers with their losses and timings; the next call carries the decode coefficients, which
it folds, allreduces and steps before computing (:meth:`GradientWorker._collective_compute`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

import numpy as np
import torch

from ..collective.group import CollectiveError
from ..data import WorkSpec
from ..wire import OK, STALE, UNPREPARED, Call, Result, WireTask
from .host import TORCH_DTYPES, device_for, job_batch, peak_rss_mb, to_host
from .prefetch import BatchPrefetcher
from .shm_serving import ShmServer


class InjectedFault(RuntimeError):
    """Raised by a worker on purpose (fault injection)."""


class GradientWorker:
    """Ray actor body (wrapped with ``ray.remote`` by :mod:`gcode.runtime.cluster`)."""

    def __init__(self, index: int):
        from gcode.train import set_single_thread

        set_single_thread()
        self.index = int(index)
        self.ctx_id: str | None = None
        self.latest = -1
        self._newer: asyncio.Event | None = None
        self._loaded: tuple | None = None
        self._prefetcher: BatchPrefetcher | None = None
        self._server: ShmServer | None = None
        self.replicas = None  # a ReplicaServer on the collective plane (worker/replicas.py)
        self.replicas_ctx: str | None = None  # the run context the replicas belong to
        self._compute_thread = None
        self.started = time.time()

    async def _configure(self, ctx_id: str, ctx_box: list) -> None:
        """Adopt a run's context (its WorkSpec) unless already on it: build the model replica and
        call the user's ``dataset_fn`` here, once. Runs again after a restart, since every call
        carries the context reference: no state is lost with the process."""
        if self.ctx_id == ctx_id:
            return
        spec = await ctx_box[0]
        if self.ctx_id == ctx_id:  # a concurrent call adopted it while we awaited
            return
        from gcode.train.compute import TaskComputer
        self.spec: WorkSpec = spec
        self.computer = TaskComputer(spec.workload, device_for(spec.use_gpu), spec.buffers,
                                     deterministic=spec.deterministic)
        self._loaded = None
        if self._prefetcher is not None:
            self._prefetcher.close()
        self._prefetcher = BatchPrefetcher(self.computer.host_batch) if spec.prefetch else None
        self.latest = -1
        self.ctx_id = ctx_id

    def ready(self) -> dict:
        import ray
        return {"worker": self.index, "pid": os.getpid(), "ctx": self.ctx_id,
                "ip": ray.util.get_node_ip_address(),
                "node": ray.get_runtime_context().get_node_id()}

    # ---- round bookkeeping --------------------------------------------------------------
    def _bump(self, r: int) -> asyncio.Event:
        """Register round r; wake every call of an older round. Returns this call's event."""
        if self._newer is None:
            self._newer = asyncio.Event()
        if r > self.latest:
            self.latest = r
            old, self._newer = self._newer, asyncio.Event()
            old.set()
        return self._newer

    def _rows(self, job: int, chunks, bounds) -> list[np.ndarray]:
        """Sample indices of each chunk of ``job`` (chunk id -> [start, stop) in ``bounds``)."""
        idx = job_batch(self.spec.seed, job, self.spec.batch_size, self.spec.num_samples)
        return [idx[bounds[c][0]:bounds[c][1]] for c in chunks]

    def _next_rows(self, tasks: list[WireTask], k: int, data: dict) -> np.ndarray:
        """The samples this worker most likely reads after task k: task k+1's, or else a guess
        at the next call's first task (the same chunks of the next job, with the same bounds)."""
        if k + 1 < len(tasks):
            job, _, chunks, _ = tasks[k + 1]
            return np.concatenate(self._rows(job, chunks, data[job][1]))
        job, _, chunks, _ = tasks[0]
        return np.concatenate(self._rows(job + 1, chunks, data[job][1]))

    def _with_fault(self, grads: np.ndarray, fault: str | None) -> np.ndarray:
        """The results as fault ``shape`` or ``nan`` spoils them (tests), else as they are."""
        if fault == "shape":
            return grads[:, :-1] if grads.shape[1] > 1 else np.empty((len(grads) + 1, 1), grads.dtype)
        if fault == "nan":
            grads = grads.copy()
            grads.flat[0:1] = np.nan
            if grads.size == 0:
                grads = np.full((1, self.spec.num_params), np.nan, grads.dtype)
        return grads

    def _load_and_compute(self, job: int, flat, rows, coefs, out, host_batch) -> float:
        """One mini-task on the compute thread: load job's parameters unless loaded (None: its
        replica's, the collective plane), compute."""
        if self._loaded != (self.ctx_id, job):
            self.computer.load(job, self.replicas.params_of(job) if flat is None else flat)
            self._loaded = (self.ctx_id, job)
        return self.computer.coded_gradient(rows, coefs, out, host_batch)

    def _compute_pool(self):
        """This worker's compute thread (the collective plane)."""
        if self._compute_thread is None:
            from concurrent.futures import ThreadPoolExecutor
            self._compute_thread = ThreadPoolExecutor(1, thread_name_prefix="gcode-compute")
        return self._compute_thread

    def _compute_after(self, after: list, r: int, *args) -> float | None:
        """On the compute thread: wait for the decodes ``after`` (a failed one raises), then
        :meth:`_load_and_compute`, unless a newer round's call came meanwhile (None)."""
        for future in after:
            future.result()
        return None if self.latest > r else self._load_and_compute(*args)

    async def _on_compute_thread(self, fn, *args):
        """Run ``fn`` on this worker's compute thread (the collective plane)."""
        return await asyncio.get_running_loop().run_in_executor(self._compute_pool(), fn, *args)

    def _stale(self, r: int, t0: float, computed_s: float | None = None,
               sleep_s: float = 0.0) -> Result:
        """Round r's call gave up for a newer round's: after ``elapsed_s``; with its compute
        time and planned sleep when it had finished computing (cut while it "straggled")."""
        return Result(status=STALE, round=r, worker=self.index,
                      elapsed_s=time.perf_counter() - t0, computed_s=computed_s, sleep_s=sleep_s)

    # ---- the task ----------------------------------------------------------------------
    async def prepare(self, ctx_id: str, ctx_box: list) -> dict:
        """Adopt the run's context before round 0 (model replica, ``dataset_fn``), so that the
        first round measures training, not start-up."""
        await self._configure(ctx_id, ctx_box)
        return {"worker": self.index, "num_params": self.computer.num_params,
                "device": str(self.computer.device), "peak_rss_mb": peak_rss_mb()}

    async def attach(self, ctl_path: str, ctx_id: str, ctx_box: list) -> dict:
        """Adopt context ``ctx_id`` and serve the shared-memory transport's calls from
        ``ctl_path`` in the background (:class:`ShmServer`)."""
        await self._configure(ctx_id, ctx_box)
        self._server = ShmServer(self)
        await self._server.start(ctl_path)
        return {"worker": self.index, "pid": os.getpid()}

    async def compute(self, header: bytes, ctx_box: list | None, *job_data: tuple,
                      plane: dict | None = None) -> Result:
        """Compute one round's mini-tasks (the Ray transport's call). ``header`` is an encoded
        :class:`Call` (one argument makes a call about twice as cheap to dispatch as ten).
        ``ctx_box`` is ``[ObjectRef of the WorkSpec]`` when the coordinator suspects this actor
        lost its context (a failure, a restart), else None; ``job_data[i]`` is (flat parameters,
        chunk bounds) of ``call.jobs[i]``, resolved by Ray before the call. ``plane`` (the
        collective plane, :meth:`_collective_compute`): the decodes to apply first."""
        call = Call.decode(header)
        if ctx_box is not None:
            await self._configure(call.ctx, ctx_box)
        elif self.ctx_id != call.ctx:  # restarted since the run began: ask for the context
            return Result(status=UNPREPARED, round=call.round, worker=self.index)
        if plane is not None:
            return await self._collective_compute(call, job_data, **plane)
        data = {job: (flat, bounds, None) for job, (flat, bounds) in zip(call.jobs, job_data)}
        return await self.work(call, data, None)

    async def _collective_compute(self, call: Call, job_data: tuple, decodes: list, upto: int,
                                  generation: int) -> Result:
        """The collective plane's call: submit the coordinator's ``decodes`` (fold, allreduce,
        step, on the communication thread, so a straggler still computing an older call joins
        them at once); once every decode numbered up to ``upto`` ran (the last on a model this
        call computes on: those on other models run on while it computes; the compute thread
        waits for them when all were submitted), compute on the replicas' copy of each job's
        parameters, keep the results and answer with their losses and the reports of the
        decodes that ran. A call of an older group ``generation`` (its decodes were repeated
        when the group re-formed) and one overtaken by a newer round's compute nothing."""
        replicas = self.replicas
        if replicas is None or self.replicas_ctx != call.ctx:
            return Result(status=UNPREPARED, round=call.round, worker=self.index)
        t0 = time.perf_counter()
        if replicas.plane.generation != generation:
            return self._stale(call.round, t0)
        self._bump(call.round)
        replicas.enqueue(decodes, self._recompute)
        after = replicas.submitted(upto)  # when not None, the compute thread waits for them
        try:
            if after is None:
                await replicas.applied(upto)
            if self.latest > call.round:
                result = self._stale(call.round, t0)
            else:  # parameters None: the compute thread takes them once the decodes ran
                data = {job: (None, bounds, None) for job, (_, bounds) in zip(call.jobs, job_data)}
                result = await self.work(call, data, None, keep=True, after=after or [])
                replicas.waited(upto)
        except CollectiveError:
            if replicas.plane.generation != generation:  # re-formed meanwhile: repeated there
                return self._stale(call.round, t0)
            raise
        # decodes past upto (on other models) may have run meanwhile: their reports go too
        return dataclasses.replace(result, steps={"applied": upto + 1,
                                                  "reports": replicas.take_reports()})

    def _recompute(self, job: int, key: tuple, task: tuple, bounds: tuple, dtype: str) -> None:
        """A kept result lost with an earlier process, computed again exactly as the first time
        (``task``: its chunks and coefficients), on the compute thread; waits for it (never
        called while that thread waits for decodes: ReplicaServer.submitted)."""
        chunks, coefs = task
        out = torch.empty(self.spec.num_params, dtype=TORCH_DTYPES[dtype], device=self.computer.device)
        self._compute_pool().submit(self._load_and_compute, job, None,
                                    self._rows(job, chunks, bounds), coefs, out, None).result()
        self.replicas.keep(key, job, out)

    async def work(self, call: Call, data: dict, out_host: np.ndarray | None,
                   keep: bool = False, after: list = ()) -> Result:
        """The mini-tasks of one call. ``data[job]`` is (flat parameters, chunk bounds, check):
        ``check()`` (when not None) tells whether the parameters were still that job's after they
        were loaded. Results are stacked in the message dtype, into ``out_host`` when given (a
        shared-memory buffer) or a fresh host array. ``keep`` (the collective plane): compute on
        the compute thread, after the decodes ``after`` ran, keep the results in the replicas'
        plane, and answer without them."""
        r, tasks, fault = call.round, call.tasks, call.fault
        newer = self._bump(r)
        t0 = time.perf_counter()
        if fault == "raise":
            raise InjectedFault(f"injected fault: worker {self.index} raises in round {r}")
        if fault == "exit":
            os._exit(17)
        computer = self.computer
        shape, torch_dtype = (len(tasks), self.spec.num_params), TORCH_DTYPES[call.dtype]
        if out_host is not None and computer.device.type == "cpu":
            out = torch.from_numpy(out_host)
        else:
            out = torch.empty(shape, dtype=torch_dtype, device=computer.device)
        losses, unreached = [], []
        ahead = self._prefetcher if torch_dtype == torch.float32 else None
        hits = ahead.hits if ahead is not None else 0
        for k, (job, slot, chunks, coefs) in enumerate(tasks):
            if self.latest > r:
                return self._stale(r, t0)
            flat, bounds, check = data[job]
            if self._loaded != (self.ctx_id, job) and not keep:  # a job's parameters never change
                computer.load(job, flat)
                self._loaded = (self.ctx_id, job)
                if check is not None and not check():  # overwritten: the job is long decoded
                    self._loaded = None
                    return self._stale(r, t0)
            rows = self._rows(job, chunks, bounds)
            host_batch = None
            if ahead is not None:
                wanted, upcoming = np.concatenate(rows), self._next_rows(tasks, k, data)
                host_batch = ahead.take(wanted) if len(wanted) else None  # no samples: no read
                if len(upcoming):
                    ahead.start(upcoming)
            if keep:
                loss = await self._on_compute_thread(self._compute_after, after, r, job, flat,
                                                     rows, coefs, out[k], host_batch)
                if loss is None:
                    return self._stale(r, t0)
                losses.append(loss)
                after = ()
            else:
                losses.append(computer.coded_gradient(rows, coefs, out[k], host_batch))
            unreached.append(computer.unreached)
            await asyncio.sleep(0)  # let a newer round's call in
        compute_s = time.perf_counter() - t0
        if keep:  # the collective plane: the results stay here, only their losses travel
            if self.replicas is None:  # the run ended meanwhile (the replicas were dropped)
                return self._stale(r, t0)
            if fault == "nan" and out.numel():
                out.view(-1)[0] = float("nan")
            for k, (job, slot, _, _) in enumerate(tasks):
                self.replicas.keep((self.index, r, slot), job, out[k])
            grads = None
        else:
            grads = self._with_fault(to_host(out, out_host), fault)
        delay_s = float(call.delay_s)
        sleep_s = delay_s if call.inject_mode == "add" else max(0.0, delay_s - compute_s)
        if sleep_s > 0:
            try:
                await asyncio.wait_for(newer.wait(), timeout=sleep_s)
                return self._stale(r, t0, compute_s, sleep_s)  # a newer round came meanwhile
            except asyncio.TimeoutError:
                pass
        if self.latest > r:
            return self._stale(r, t0, compute_s, sleep_s)
        tag = r - 1 if fault == "tag" else r  # fault 'tag': a result labelled with another round
        return Result(status=OK, round=tag, worker=self.index, attempt=call.attempt,
                      tags=call.tags, grads=grads, losses=losses, unreached=unreached,
                      compute_s=compute_s, sleep_s=sleep_s, pid=os.getpid(),
                      read_ahead=(ahead.hits - hits) if ahead is not None else 0,
                      peak_rss_mb=peak_rss_mb())

    # ---- the collective data plane (worker/replicas.py) ---------------------------------
    async def join_collective(self, ctx_id: str, ctx_box: list, models: int, delayed: bool,
                              accumulate_dtype: str, max_grad_norm: float | None = None,
                              zero: int = 0) -> dict:
        """Adopt the run's context and build the replicas of its ``models`` from its seed
        (``zero`` 1: each will step its shard of the optimizers' state)."""
        from .replicas import ReplicaServer
        await self._configure(ctx_id, ctx_box)
        self.leave_collective()
        self.replicas = ReplicaServer(self.spec, models, delayed, accumulate_dtype,
                                      self.computer.device, max_grad_norm, zero)
        self.replicas_ctx = ctx_id
        return {"worker": self.index, "pid": os.getpid(), "checksums": self.replicas.checksums()}

    def leave_collective(self) -> None:
        """Leave the group and drop the replicas (the run is over)."""
        if self.replicas is not None:
            self.replicas.close()
        self.replicas = self.replicas_ctx = None

    def rendezvous_point(self) -> tuple[str, int]:
        return self.replicas.plane.rendezvous_point()

    async def join_group(self, rendezvous, rank: int) -> None:
        await asyncio.wrap_future(self.replicas.plane.join_group(rendezvous, rank))

    async def leave_group(self) -> None:
        if self.replicas is not None:
            await asyncio.wrap_future(self.replicas.plane.leave_group())

    async def apply_decodes(self, decodes: list, upto: int, generation: int,
                            regrouped: bool = False, want: tuple = ()) -> dict:
        """Apply ``decodes`` and every decode numbered up to ``upto`` (a call that carries
        earlier ones may still be on its way); ``regrouped`` (the group re-formed): these are
        every decode not known applied everywhere, run now in order (those this replica
        stepped are skipped), and ``upto + 1`` comes next. Returns the decodes' reports as
        :meth:`compute`'s result carries them, with those of the jobs ``want`` (reports whose
        calls the coordinator never read)."""
        replicas = self.replicas
        replicas.plane.member.check(generation, "a decode")
        replicas.enqueue(decodes, self._recompute, direct_from=upto + 1 if regrouped else None)
        await replicas.applied(upto)
        return {"applied": upto + 1, "reports": [*replicas.take_reports(),
                                                 *replicas.reports_for(want)]}

    def has_replicas(self, ctx_id: str) -> bool:
        """Whether this process holds run ``ctx_id``'s replicas (False after a restart)."""
        return self.replicas is not None and self.replicas_ctx == ctx_id

    async def sync_replicas(self, src: int) -> None:
        """Every rank's replicas (and jobs in flight) become rank ``src``'s: a broadcast in the
        group, so a restarted actor gets them from a peer."""
        plane = self.replicas.plane
        mine = plane.member.rank == src
        tree = await asyncio.wrap_future(plane.broadcast(self.replicas.tree() if mine else None,
                                                         src))
        if not mine:
            self.replicas.load_tree(tree)

    async def check_replicas(self) -> dict:
        return await asyncio.wrap_future(self.replicas.plane.check_replicas(self.replicas.named()))

    async def replica_state(self) -> list[dict]:
        """The replicas' state (zero=1: gathered on the communication thread, by every rank)."""
        return await self._on_plane("gathering the replicas' state", self.replicas.state)

    async def load_replicas(self, state: list[dict]) -> None:
        await self._on_plane("loading the replicas", lambda: self.replicas.load(state))

    async def _on_plane(self, what: str, body):
        """``body()`` here, or with zero=1 (shards, collectives) on the communication thread."""
        if self.replicas.sharded is None:
            return body()
        return await asyncio.wrap_future(self.replicas.plane.submit(what, body))

    def job_params(self, job: int) -> np.ndarray:
        return self.replicas.params_of(job).cpu().numpy()

    def kept_results(self, keys: list) -> list[np.ndarray]:
        return self.replicas.kept(keys)

    def keep_results(self, items: list) -> None:
        """Keep results again (a checkpoint's, on resume): [(key, job, array)]."""
        for key, job, array in items:
            self.replicas.keep(tuple(key), job, torch.from_numpy(np.asarray(array)))
