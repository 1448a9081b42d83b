"""``gcode.load_checkpoint``: the trained models of a checkpoint, for inference or for your own
training loop, built with your ``model_fn`` (and optimizers and schedulers when asked).

A checkpoint folder (or a run's checkpoint directory: its newest checkpoint) is read and verified
as a resume reads it (:func:`gcode.runtime.checkpoint.read_checkpoint`: checksums, bounded sizes,
no pickle), then each model's saved ``state_dict`` is loaded strictly into ``model_fn()``: the
returned models equal the run's ``result.models`` at that checkpoint, bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .files import CheckpointError, read_checkpoint


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns: ``models`` (nn.Modules on the CPU, model m the one
    job t trained when t mod M = m), their ``optimizers`` and ``schedulers`` (empty unless
    ``optimizer_fn``/``scheduler_fn`` were given), the checkpoint's ``round`` (the next round
    to run; the run's rounds when it is the final one), the run's ``config`` (a dict, as in
    ``state.json``), ``path`` (the checkpoint folder) and ``updates`` (each model's optimizer
    steps)."""

    models: list
    round: int
    config: dict
    path: str
    updates: list = field(default_factory=list)
    optimizers: list = field(default_factory=list)
    schedulers: list = field(default_factory=list)


def load_checkpoint(path: str | os.PathLike, *, model_fn: Callable[[], Any],
                    optimizer_fn: Callable | None = None,
                    scheduler_fn: Callable | None = None) -> LoadedCheckpoint:
    """The models of the checkpoint at ``path`` (a ``round-NNNNNNNN`` folder, or a checkpoint
    directory: its newest), each built by ``model_fn()`` and loaded with its saved parameters and
    buffers; with ``optimizer_fn(params)`` also their optimizers in their saved state, and with
    ``scheduler_fn(optimizer)`` (needs ``optimizer_fn``) their LR schedulers. Raises
    :class:`CheckpointError` naming the argument and the tensor when ``model_fn`` builds another
    model than the checkpointed one."""
    from gcode.train import FlatModel, build_model
    from gcode.train.workload import WorkloadError, build_optimizer, build_scheduler

    from ..loop.models import ModelBank
    from .checks import check_against

    if scheduler_fn is not None and optimizer_fn is None:
        raise WorkloadError("load_checkpoint: scheduler_fn needs optimizer_fn (a scheduler "
                            "schedules an optimizer)")
    ck = read_checkpoint(path)
    saved = ck.tree["models"]
    if scheduler_fn is None:  # the saved schedules are left unread
        saved = [{k: v for k, v in entry.items() if k != "scheduler"} for entry in saved]
    models = [FlatModel(build_model(model_fn, 0)) for _ in saved]
    optimizers = [build_optimizer(optimizer_fn, m.module) for m in models] if optimizer_fn else []
    schedulers = [build_scheduler(scheduler_fn, o) for o in optimizers] if scheduler_fn else []
    problem = check_against(models, optimizers or None, models[0].numel, {"models": saved})
    if problem is not None:
        raise CheckpointError(f"load_checkpoint: model_fn{' or optimizer_fn' if optimizers else ''} "
                              f"builds another model than the one checkpointed in {ck.path}: "
                              f"{problem}")
    if optimizers:
        try:
            ModelBank(models, optimizers, False, None, schedulers=schedulers or None
                      ).load_state_dict(saved)
        except ValueError as exc:
            raise CheckpointError(f"load_checkpoint: {exc}") from None
    else:
        import torch
        for model, entry in zip(models, saved):
            model.module.load_state_dict({k: torch.tensor(v) for k, v in entry["params"].items()},
                                         strict=True)
    updates = list(ck.tree["coordinator"].get("updates", []))
    return LoadedCheckpoint([m.module for m in models], ck.round, ck.config, str(ck.path),
                            updates, optimizers, schedulers)


__all__ = ["LoadedCheckpoint", "load_checkpoint"]
