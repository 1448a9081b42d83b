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
  and all-reduces with every other worker's (:meth:`reduce`).

Collectives run on the plane's own thread (:class:`gcode.runtime.collective.CollectivePlane`)
and the worker computes on a thread of its own, so a straggler whose compute is still busy
enters the allreduce at once with what it has (zeros for what it never finished).
"""

from __future__ import annotations

import asyncio

import numpy as np
import torch

from ..collective import CollectiveConfig, CollectivePlane, GroupConfig
from ..collective.replicas import checksum


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


class ReplicaServer:
    """One worker's replicas and collective plane for one run context."""

    def __init__(self, spec, models: int, delayed: bool, accumulate_dtype: str, device,
                 max_grad_norm: float | None = None):
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
                                                      accumulate_dtype=accumulate_dtype))
        self.snapshots: dict[int, torch.Tensor] = {}  # job -> its parameters, once taken
        self.stepped: list[int] = []  # jobs this worker's replicas stepped (the last few)
        self.reports: dict[int, dict] = {}  # stepped job -> its reply (a repeated decode's)

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
    async def reduce(self, job: int, model: int, pairs: list, snapshot: list[int], scale: float,
                     check: bool, send_decoded: bool = False, unreached=()) -> dict:
        """Fold this worker's (key, coefficient) ``pairs`` of ``job``, allreduce, and step replica
        ``model`` with ``scale`` · sum; first take the parameters of the jobs in ``snapshot``
        (still in flight on that model). ``check``: then compare every replica across the
        group (a mismatch raises ReplicaMismatch). Returns whether the sum was finite (a
        non-finite one steps nothing) and what the step did (``lr``, ``grad_norm``,
        ``clip_factor``: :class:`gcode.train.step.StepReport`); ``send_decoded`` (one rank, with
        ``check_decode``): also the all-reduced sum (``decoded``, fp64) and the job's parameters
        (``params``), for the coordinator to compare with the gradient it computes directly.
        The parameters ``unreached`` (no result of the job reached them) get no ``.grad``.
        A job every replica stepped already (the decode is repeated after a fault that struck
        once it was done) is not stepped again."""
        if job in self.stepped:
            return {**self.reports.get(job, {"finite": True}), "repeated": True}
        for t in snapshot:
            self.params_of(t)
        params = self.params_of(job).cpu().numpy() if send_decoded else None
        total = await asyncio.wrap_future(self.plane.decode(job, [(tuple(k), a) for k, a in pairs]))
        finite = bool(torch.isfinite(total).all())
        reply: dict = {"finite": finite}
        if send_decoded:
            reply.update(decoded=total.to("cpu", torch.float64).numpy(), params=params)
        if finite:
            report = self.bank.step(model, total, scale, f"model {model} at job {job}",
                                    unreached=unreached)
            reply.update(lr=report.lr[0], grad_norm=report.grad_norm, clip_factor=report.clip_factor)
            self.stepped = [*self.stepped[-63:], job]
            # the last job's reply whole (its decode may be repeated), older ones without arrays
            self.reports = {t: _scalars(self.reports[t]) for t in self.stepped if t in self.reports}
            self.reports[job] = reply
        self.release(job)
        if check:
            await asyncio.wrap_future(self.plane.check_replicas(self.named()))
        return reply

    def release(self, job: int) -> None:
        self.plane.release(job)
        self.snapshots.pop(job, None)

    # ---- replicas ----------------------------------------------------------------------------
    def named(self) -> dict[str, list[torch.Tensor]]:
        """Each replica's parameters and optimizer state tensors, by name (for the check)."""
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
        """The replicas as :meth:`ModelBank.state_dict` gives them, tensors as host arrays."""
        return _host(self.bank.state_dict())

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
        self.snapshots.clear()

    def close(self) -> None:
        self.plane.close()
