"""The coordinator's M models and their optimizers (the checkpoint's ``models`` section).

Job t trains model t mod M (concurrent mode), or the one model (delayed mode). A model's
parameters are checked finite before a job ships them and before a checkpoint captures them, so
a diverged model stops the run at once, naming it, and every checkpoint can be resumed.

On the collective data plane the models that train are the workers' replicas
(:mod:`gcode.runtime.collective.transport`): ``replicas`` is then set, this bank is refreshed
from a replica before it is read (a checkpoint, an evaluation, the final checksums), a state
loaded into it goes to every replica too, and divergence is caught where the replicas step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DivergedError


class ModelBank:
    """M :class:`gcode.train.FlatModel` replicas, their optimizers and their LR schedulers (None
    each without ``scheduler_fn``). ``hint()`` ends a divergence message (the last good
    checkpoint); ``workload`` names the optimizer in it and evaluates held-out data;
    ``max_grad_norm`` clips every decoded gradient (:mod:`gcode.train.step`)."""

    def __init__(self, models: list, optimizers: list, delayed: bool, workload: Any,
                 hint: Callable[[], str] = str, schedulers: list | None = None,
                 max_grad_norm: float | None = None):
        self.models, self.optimizers = models, optimizers
        self.schedulers = schedulers if schedulers is not None else [None] * len(models)
        self.delayed = delayed
        self.workload = workload
        self.hint = hint
        self.max_grad_norm = max_grad_norm
        self.replicas = None  # the collective plane's reducer: refresh(bank), push(state)

    def current(self) -> ModelBank:
        """This bank, with the replicas' state where they trained (the collective plane)."""
        if self.replicas is not None:
            self.replicas.refresh(self)
        return self

    @property
    def M(self) -> int:
        return len(self.models)

    def model_of(self, t: int) -> int:
        return 0 if self.delayed else t % self.M

    def params(self, m: int):
        """Model m's live flat parameters (a tensor on its device)."""
        return self.models[m].params

    def step(self, m: int, grad, scale: float, what: str, unreached=(),
             skip_nonfinite: bool = False):
        """Model m's update with its decoded gradient ``scale`` · ``grad``: clipped, the
        optimizer's step, the scheduler's (:func:`gcode.train.step.step`; ``what``: the step,
        for a failing optimizer's message; ``unreached``: parameters left without a ``.grad``;
        ``skip_nonfinite``: a non-finite gradient steps nothing). Returns its
        :class:`gcode.train.step.StepReport`."""
        from gcode.train.step import step
        return step(self.models[m], self.optimizers[m], grad, scale,
                    scheduler=self.schedulers[m], max_grad_norm=self.max_grad_norm, what=what,
                    optimizer_fn=self.workload.optimizer_fn, unreached=unreached,
                    round_sum=bool(getattr(self.workload, "exact_blocks", 0)),
                    skip_nonfinite=skip_nonfinite)

    # ---- divergence ---------------------------------------------------------------------
    def lr_hint(self) -> str:
        from gcode.train.optim import optimizer_hint
        return optimizer_hint(self.workload.optimizer_fn)

    def check_finite(self, t: int) -> None:
        """Before job t is issued: the parameters of its model are finite (the replicas check
        their all-reduced gradient instead)."""
        if self.replicas is not None:
            return
        m = self.model_of(t)
        bad = self._nonfinite(m)
        if bad:
            after = f"after job {t - self.M}'s update " if not self.delayed and t >= self.M else ""
            raise DivergedError(f"model {m} diverged: its parameters hold {bad} non-finite values "
                                f"{after}before job {t} (is {self.lr_hint()} too large?){self.hint()}")

    def check_all_finite(self, r: int) -> None:
        """Before a checkpoint at the boundary of round r: every model is finite, so a
        checkpoint is always one to resume from ("the last good checkpoint")."""
        self.current()
        for m in range(self.M):
            bad = self._nonfinite(m)
            if bad:
                raise DivergedError(f"model {m} diverged: its parameters hold {bad} non-finite "
                                    f"values at round {r}, so no checkpoint of them is written "
                                    f"(is {self.lr_hint()} too large?){self.hint()}")

    def _nonfinite(self, m: int) -> int:
        import torch
        params = self.models[m].params
        return int(params.numel() - torch.isfinite(params).sum())

    # ---- reports ------------------------------------------------------------------------
    def evaluate(self, dataset, updates: list[int], **extra) -> list[dict]:
        """Every model's held-out loss (and accuracy) on ``dataset``, with its updates."""
        from gcode.train.compute import evaluate
        self.current()
        return [{**extra, "model": m, "updates": updates[m],
                 **evaluate(model.module, self.workload, dataset, model.device)}
                for m, model in enumerate(self.models)]

    def checksums(self) -> list[float]:
        """Each model's float64 sum of its parameters."""
        self.current()
        return [float(model.params.double().sum()) for model in self.models]

    # ---- checkpoint ---------------------------------------------------------------------
    def state_dict(self) -> list[dict]:
        """Each model's parameters and buffers, its optimizer's class and state, and its
        scheduler's (the key ``scheduler`` only where there is one)."""
        from gcode.train.optim import optimizer_class
        self.current()
        out = []
        for model, optimizer, scheduler in zip(self.models, self.optimizers, self.schedulers):
            sd = optimizer.state_dict()
            out.append({"params": {k: v.cpu() for k, v in model.module.state_dict().items()},
                        "optimizer": {"class": optimizer_class(optimizer),
                                      "state": dict(sd["state"]),
                                      "param_groups": sd["param_groups"]}})
            if scheduler is not None:
                out[-1]["scheduler"] = scheduler.state_dict()
        return out

    def load_state_dict(self, saved: list[dict], to_replicas: bool = True) -> None:
        """Back to a :meth:`state_dict` (and every replica too, unless ``to_replicas`` is
        False: the state came from one)."""
        import torch
        if len(saved) != self.M:
            raise ValueError(f"{len(saved)} models, expected {self.M}")
        for model, opt, entry in zip(self.models, self.optimizers, saved):
            model.module.load_state_dict({k: torch.tensor(v) for k, v in entry["params"].items()},
                                         strict=True)
            state = {int(k): {kk: torch.tensor(vv) if isinstance(vv, np.ndarray) else vv
                              for kk, vv in st.items()}
                     for k, st in entry["optimizer"]["state"].items()}
            opt.load_state_dict({"state": state, "param_groups": entry["optimizer"]["param_groups"]})
        for m, (scheduler, entry) in enumerate(zip(self.schedulers, saved)):
            if (scheduler is None) != ("scheduler" not in entry):
                raise ValueError(f"model {m}: the checkpoint holds "
                                 f"{'no ' if scheduler is not None else ''}LR scheduler state "
                                 f"but this run has {'one' if scheduler is not None else 'none'} "
                                 f"(scheduler_fn must be given as in the checkpointed run)")
            if scheduler is not None:
                scheduler.load_state_dict(entry["scheduler"])
        if to_replicas and self.replicas is not None:
            self.replicas.push(saved)
