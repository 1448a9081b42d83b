"""The worker's end of the collective data plane (issue 26): replicas of the run's M models and
their optimizers, each job's parameters, the coded results this worker kept, and the group.

* **Replicas.** Every worker builds the M models, their optimizers and LR schedulers from the
  run's seed exactly as the coordinator does (:func:`gcode.runtime.build.build_models`), so
  they start bit-identical, and steps them with the same all-reduced gradients through the same
  step (:meth:`gcode.runtime.loop.models.ModelBank.step`, i.e. :func:`gcode.train.step.step`:
  clipping, optimizer, scheduler), so they stay bit-identical.
* **A job's parameters** are its model's replica as it was when the job was issued: taken at
  the first call that needs it (:meth:`ReplicaServer.params_of`), or just before the replica
  steps when the coordinator names a job still in flight on that model (delayed mode).
* **Results** are kept on this worker (:meth:`keep`), never sent: the coordinator sends each
  worker the decode coefficients of its own results, which it folds into the job's accumulator
  and all-reduces with every other worker's (:meth:`apply`).
* **Decodes** come numbered, with the compute calls (or a settle): :meth:`enqueue` submits them
  in their numbers' order whatever order the calls ran in, so every worker runs the same
  collectives in the same order, and a call computes only once every decode up to its
  ``upto`` has run (:meth:`applied`).

With ``zero=1`` each replica steps this rank's shard of its optimizer's state instead
(:class:`gcode.runtime.collective.sharding.ShardedBank`: reduce-scatter, step, all-gather); the
replica's own optimizer then keeps the param groups and the scheduler but no state, and reading
the replicas' state (a checkpoint) gathers it whole, on every rank.

Decodes (fold, allreduce, step, check) run on the plane's own thread
(:class:`gcode.runtime.collective.CollectivePlane`) and the worker computes on a thread of its
own, so a straggler whose compute is still busy enters the allreduce at once with what it has
(zeros for what it never finished).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import torch

from ..collective import CollectiveConfig, CollectiveError, CollectivePlane, GroupConfig
from ..collective.replicas import check_identical, checksum
from ..collective.sharding import ShardedBank


def _host(node):
    """``node`` with every tensor as a host array (the form ModelBank.load_state_dict reads)."""
    if isinstance(node, torch.Tensor):
        return node.cpu().numpy()
    if isinstance(node, dict):
        return {k: _host(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_host(v) for v in node]
    return node


def _scalars(reply: dict) -> dict:
    """A decode's reply without its arrays (``decoded``, ``params``)."""
    return {k: v for k, v in reply.items() if not isinstance(v, np.ndarray)}


#: jobs whose all-reduced sum and parameters each rank keeps with ``check_decode`` (the last
#: ones it stepped): a decode repeated after a fault is checked by any surviving rank
ARRAYS_KEPT = 2


class ReplicaServer:
    """One worker's replicas and collective plane for one run context."""

    def __init__(self, spec, models: int, delayed: bool, accumulate_dtype: str, device,
                 max_grad_norm: float | None = None, zero: int = 0):
        from ...train import FlatModel, build_model
        from ...train.workload import build_optimizer, build_scheduler
        from ..data import model_seed
        from ..loop.models import ModelBank
        modules, optimizers, schedulers = [], [], []
        for m in range(models):  # as gcode.runtime.build.build_models does on the coordinator
            model = FlatModel(build_model(spec.workload.model_fn, model_seed(spec.seed, m)), device)
            modules.append(model)
            optimizers.append(build_optimizer(spec.workload.optimizer_fn, model.module))
            schedulers.append(build_scheduler(spec.workload.scheduler_fn, optimizers[-1]))
        self.bank = ModelBank(modules, optimizers, delayed, spec.workload, schedulers=schedulers,
                              max_grad_norm=max_grad_norm)
        self.plane = CollectivePlane(spec.num_params, device,
                                     CollectiveConfig(group=GroupConfig(),
                                                      accumulate_dtype=accumulate_dtype, zero=zero))
        #: zero=1: each replica steps this rank's shard of its optimizer's state
        self.sharded = ShardedBank(self.bank, self.plane.member) if self.plane.config.zero else None
        self.snapshots: dict[int, torch.Tensor] = {}  # job -> its parameters, once taken
        self.stepped: list[int] = []  # jobs this worker's replicas stepped (the last few)
        self.reports: dict[int, dict] = {}  # stepped job -> its reply (a repeated decode's)
        self.next_seq = 0  # the number of the next decode to submit (the coordinator numbers them)
        self.parked: dict[int, dict] = {}  # decodes that came before an earlier one
        self.futures: dict[int, Future] = {}  # decode number -> its report's future (the last few)
        self.fresh: dict[int, dict] = {}  # decode number -> its report, not yet sent
        self.loaded = False  # a state was loaded (a resume, a restart): see submitted()

    # ---- a job's parameters and results ----------------------------------------------------
    def params_of(self, job: int) -> torch.Tensor:
        """Job ``job``'s parameters: its model's replica when first asked (read-only)."""
        snap = self.snapshots.get(job)
        if snap is None:
            snap = self.snapshots[job] = self.bank.params(self.bank.model_of(job)).detach().clone()
        return snap

    def keep(self, key: tuple, job: int, message: torch.Tensor) -> None:
        self.plane.keep(tuple(key), job, message)

    def missing(self, job: int, keys: list) -> list[tuple]:
        """Of ``keys`` (this worker's results in job's decode), those neither kept nor folded:
        lost with a restarted process, to be computed again."""
        folded = self.plane.jobs.folded(job)
        return [tuple(k) for k in keys if tuple(k) not in folded and not self.plane.jobs.has(tuple(k))]

    def kept(self, keys: list) -> list[np.ndarray]:
        """The kept results ``keys`` (for a checkpoint), as host arrays."""
        out = []
        for key in keys:
            found = self.plane.jobs._results.get(tuple(key))
            if found is None:
                raise KeyError(f"no kept result {tuple(key)} on this worker")
            out.append(found[1].cpu().numpy())
        return out

    # ---- decode ------------------------------------------------------------------------------
    def enqueue(self, decodes: list[dict], recompute: Callable, direct_from: int | None = None) -> None:
        """Submit ``decodes`` (:meth:`apply`'s requests, numbered ``seq`` by the coordinator) to
        the communication thread in the order of their numbers, whatever order the calls that
        carry them ran in: one that comes before an earlier number waits here for it, and one
        submitted before is not submitted again. ``direct_from`` (the group re-formed): forget
        what waits, submit ``decodes`` now in the order given, and expect number
        ``direct_from`` next."""
        if direct_from is not None:
            self.parked.clear()
            self.futures.clear()  # those of the old group (failed, or done: reported before)
            for d in decodes:
                self._submit(d, recompute)
            self.next_seq = direct_from
        else:
            for d in decodes:
                if d["seq"] >= self.next_seq:
                    self.parked[d["seq"]] = d
            while self.next_seq in self.parked:
                self._submit(self.parked.pop(self.next_seq), recompute)
                self.next_seq += 1
        for seq in [q for q in self.futures if q < self.next_seq - 128]:
            del self.futures[seq]

    def _submit(self, decode: dict, recompute: Callable) -> None:
        future = self.plane.submit(f"decode of job {decode['job']}",
                                   lambda: self.apply(decode, recompute))
        future.add_done_callback(lambda f: self._done(decode["seq"], f))
        self.futures[decode["seq"]] = future

    def _done(self, seq: int, future: Future) -> None:
        if not future.cancelled() and future.exception() is None:  # a failure raises to a waiter
            self.fresh[seq] = future.result()

    def take_reports(self) -> list[dict]:
        """The reports of the decodes that ran since the last call took them, in order."""
        return [self.fresh.pop(seq) for seq in sorted(self.fresh)]

    def reports_for(self, jobs) -> list[dict]:
        """The reports of ``jobs`` this replica applied lately (arrays of the last one only)."""
        return [{**self.reports[t], "job": t} for t in jobs if t in self.reports]

    async def applied(self, upto: int) -> None:
        """Once every decode numbered up to ``upto`` was submitted (calls that carry earlier
        ones may still be on their way, for at most the group's bound) and has run."""
        rendezvous = self.plane.member.rendezvous
        timeout_s = rendezvous.timeout_s if rendezvous is not None else GroupConfig().timeout_s
        deadline = time.monotonic() + timeout_s
        while self.next_seq <= upto:
            if time.monotonic() > deadline:
                raise CollectiveError(f"decode {self.next_seq} never reached this worker within "
                                      f"{timeout_s:g} s (decodes up to {upto} were asked for)")
            await asyncio.sleep(0.001)
        for seq in sorted(q for q in self.futures if q <= upto):
            future = self.futures.get(seq)
            if future is None:  # the group re-formed meanwhile (enqueue cleared them)
                continue
            if not future.done():
                await asyncio.wrap_future(future)
            future.result()  # a failed one raises here, and for every later call until re-formed
        self.waited(upto)

    def submitted(self, upto: int) -> list[Future] | None:
        """The futures of the decodes up to ``upto`` not yet waited for, when every one was
        submitted and none can need a result computed again (no state was loaded here), so
        that the compute thread may wait for them itself before it computes; else None
        (:meth:`applied` waits)."""
        if self.next_seq <= upto or self.loaded:
            return None
        return [self.futures[q] for q in sorted(self.futures) if q <= upto]

    def waited(self, upto: int) -> None:
        """Forget the futures up to ``upto`` that succeeded: no later call need wait for them."""
        for seq in [q for q, f in self.futures.items() if q <= upto and f.done()
                    and not f.cancelled() and f.exception() is None]:
            del self.futures[seq]

    def apply(self, decode: dict, recompute: Callable) -> dict:
        """One decode, on the communication thread: fold this worker's (key, coefficient) pairs
        of ``job``, allreduce, and step replica ``model`` with ``scale`` · sum; first take the
        parameters of the jobs in ``snapshot`` (still in flight on that model), and compute
        again the results of this worker lost with an earlier process (``recompute(job, key,
        task, bounds, dtype)``, on the compute thread). ``check``: then compare every replica
        across the group (a mismatch raises ReplicaMismatch). Returns the report: whether the
        sum was finite (a non-finite one steps nothing), what the step did (``lr``,
        ``grad_norm``, ``clip_factor``: :class:`gcode.train.step.StepReport`) and the seconds
        by phase; ``send_decoded`` (one rank, with ``check_decode``): also the all-reduced sum
        (``decoded``, fp64) and the job's parameters (``params``), for the coordinator to
        compare with the gradient it computes directly; ``gather_sum`` (every rank, with
        ``check_decode``): keep those two for the last :data:`ARRAYS_KEPT` jobs stepped, so
        that any surviving rank can send them for a decode repeated after a fault. The
        parameters ``unreached`` (no result of the job reached them) get no ``.grad``. A job
        this replica stepped already (a decode repeated after a fault that struck once it was
        done) is not stepped again: its kept report answers."""
        job, model = decode["job"], decode["model"]
        if job in self.stepped:
            kept = self.reports.get(job, {"finite": True})
            return {**(kept if decode["send_decoded"] else _scalars(kept)), "job": job,
                    "repeated": True}
        t0 = time.perf_counter()
        for t in decode["snapshot"]:
            self.params_of(t)
        keep_arrays = decode["send_decoded"] or decode.get("gather_sum", False)
        params = self.params_of(job).cpu().numpy() if keep_arrays else None
        tasks = {tuple(key): task for key, _, task in decode["pairs"]}
        for key in self.missing(job, list(tasks)):
            recompute(job, key, tasks[key], decode["bounds"], decode["dtype"])
        phases = {"snapshot": time.perf_counter() - t0}
        pairs = [(tuple(k), a) for k, a, _ in decode["pairs"]]
        what = f"model {model} at job {job}"
        if self.sharded is not None:  # zero=1: reduce-scatter, step the shard, all-gather
            t1 = time.perf_counter()
            self.plane.jobs.fold(job, pairs)
            t2 = time.perf_counter()
            phases["fold"] = t2 - t1
            report, total = self.sharded.step(model, self.plane.jobs.accumulator(job), decode["scale"],
                                              what, decode["unreached"], decode.get("gather_sum", False),
                                              phases)
        else:
            total = self.plane.fold_and_reduce(job, pairs, times=phases)
            t2 = time.perf_counter()
            report = self.bank.step(model, total, decode["scale"], what,
                                    unreached=decode["unreached"], skip_nonfinite=True)
        finite = math.isfinite(report.grad_norm)  # else the replica did not step
        reply: dict = {"job": job, "finite": finite, "phases": phases}
        arrays = {"decoded": total.to("cpu", torch.float64).numpy(), "params": params} if keep_arrays else {}
        if finite:
            reply.update(lr=report.lr[0], grad_norm=report.grad_norm, clip_factor=report.clip_factor)
            self.stepped = [*self.stepped[-63:], job]
            if len(self.stepped) > ARRAYS_KEPT:  # older reports than the last few lose their arrays
                older = self.stepped[-ARRAYS_KEPT - 1]
                if older in self.reports:
                    self.reports[older] = _scalars(self.reports[older])
            self.reports = {t: self.reports[t] for t in self.stepped if t in self.reports}
        self.reports[job] = {**reply, **arrays}  # a non-finite one too: the coordinator must hear of it
        if decode["send_decoded"]:
            reply.update(arrays)
        self.release(job)
        t3 = time.perf_counter()
        phases.setdefault("step", t3 - t2)
        if decode["check"]:
            check_identical(self.named(), self.plane.device)
        phases["check"] = time.perf_counter() - t3
        return reply

    def release(self, job: int) -> None:
        self.plane.release(job)
        self.snapshots.pop(job, None)

    # ---- replicas ----------------------------------------------------------------------------
    def named(self) -> dict[str, list[torch.Tensor]]:
        """Each replica's parameters and optimizer state tensors, by name (for the check); with
        zero=1 its parameters only (each rank holds another shard of the state)."""
        if self.sharded is not None:
            return {f"model {m}": [model.params] for m, model in enumerate(self.bank.models)}
        out = {}
        for m, (model, opt) in enumerate(zip(self.bank.models, self.bank.optimizers)):
            state = [v for st in opt.state_dict()["state"].values() for v in st.values()
                     if isinstance(v, torch.Tensor)]
            out[f"model {m}"] = [model.params, *state]
        return out

    def checksums(self) -> dict[str, int]:
        """This worker's digest of each replica (parameters and optimizer state)."""
        return {name: checksum(tensors) for name, tensors in self.named().items()}

    def state(self) -> list[dict]:
        """The replicas as :meth:`ModelBank.state_dict` gives them, tensors as host arrays
        (zero=1: the optimizers' state gathered whole, a collective: call it on every rank, on
        the communication thread)."""
        return _host(self.bank.state_dict() if self.sharded is None else self.sharded.state_dict())

    def tree(self) -> dict:
        """Everything a restarted peer needs (:meth:`load_tree`): the replicas, the parameters
        of jobs in flight, the jobs stepped."""
        return {"models": self.bank.state_dict(), "snapshots": dict(self.snapshots),
                "stepped": list(self.stepped),
                "reports": [[t, _scalars(r)] for t, r in self.reports.items()]}

    def load_tree(self, tree: dict) -> None:
        self.load(_host(tree["models"]))
        self.snapshots = {int(t): p.to(self.plane.device) for t, p in tree["snapshots"].items()}
        self.stepped = [int(t) for t in tree["stepped"]]
        self.reports = {int(t): dict(r) for t, r in tree["reports"]}

    def load(self, state: list[dict]) -> None:
        """Replicas from a :meth:`state` (a checkpoint's models, or a peer's after a restart)."""
        self.bank.load_state_dict(state)
        self.loaded = True  # results of jobs in flight may be lost: decodes may compute again
        if self.sharded is not None:
            self.sharded.loaded()
        self.snapshots.clear()

    def close(self) -> None:
        self.plane.close()
