"""The coordinator's M models and their optimizers (the checkpoint's ``models`` section).

Job t trains model t mod M (concurrent mode), or the one model (delayed mode). A model's
parameters are checked finite before a job ships them and before a checkpoint captures them, so
a diverged model stops the run at once, naming it, and every checkpoint can be resumed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DivergedError


class ModelBank:
    """M :class:`gcode.train.FlatModel` replicas and their optimizers. ``hint()`` ends a
    divergence message (the last good checkpoint); ``workload`` names the optimizer in it and
    evaluates held-out data."""

    def __init__(self, models: list, optimizers: list, delayed: bool, workload: Any,
                 hint: Callable[[], str] = str):
        self.models, self.optimizers = models, optimizers
        self.delayed = delayed
        self.workload = workload
        self.hint = hint

    @property
    def M(self) -> int:
        return len(self.models)

    def model_of(self, t: int) -> int:
        return 0 if self.delayed else t % self.M

    def params(self, m: int):
        """Model m's live flat parameters (a tensor on its device)."""
        return self.models[m].params

    def step(self, m: int, grad, scale: float, what: str) -> None:
        """Model m's optimizer step with gradient ``scale`` · ``grad`` (``what``: the step, for
        a failing optimizer's message)."""
        from gcode.train.optim import step
        self.models[m].set_gradient(grad, scale)
        step(self.optimizers[m], self.workload.optimizer_fn, what)

    # ---- divergence ---------------------------------------------------------------------
    def lr_hint(self) -> str:
        from gcode.train.optim import optimizer_hint
        return optimizer_hint(self.workload.optimizer_fn)

    def check_finite(self, t: int) -> None:
        """Before job t is issued: the parameters of its model are finite."""
        m = self.model_of(t)
        bad = self._nonfinite(m)
        if bad:
            after = f"after job {t - self.M}'s update " if not self.delayed and t >= self.M else ""
            raise DivergedError(f"model {m} diverged: its parameters hold {bad} non-finite values "
                                f"{after}before job {t} (is {self.lr_hint()} too large?){self.hint()}")

    def check_all_finite(self, r: int) -> None:
        """Before a checkpoint at the boundary of round r: every model is finite, so a
        checkpoint is always one to resume from ("the last good checkpoint")."""
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
        return [{**extra, "model": m, "updates": updates[m],
                 **evaluate(model.module, self.workload, dataset, model.device)}
                for m, model in enumerate(self.models)]

    def checksums(self) -> list[float]:
        """Each model's float64 sum of its parameters."""
        return [float(model.params.double().sum()) for model in self.models]

    # ---- checkpoint ---------------------------------------------------------------------
    def state_dict(self) -> list[dict]:
        """Each model's parameters and buffers, and its optimizer's state."""
        out = []
        for model, optimizer in zip(self.models, self.optimizers):
            sd = optimizer.state_dict()
            out.append({"params": {k: v.cpu() for k, v in model.module.state_dict().items()},
                        "optimizer": {"state": dict(sd["state"]),
                                      "param_groups": sd["param_groups"]}})
        return out

    def load_state_dict(self, saved: list[dict]) -> None:
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
