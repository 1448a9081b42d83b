"""Optimizer construction by name (the presets' ``optimizer_fn``), and the coordinator's checked
optimizer step."""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch

from .workload import WorkloadError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
}


def make_optimizer(name: str, params: Iterable[torch.Tensor], **hyper: object) -> torch.optim.Optimizer:
    """Build optimizer ``name`` ("sgd" or "adam"); ``hyper`` passes through to torch (lr, momentum, ...)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(sorted(OPTIMIZERS))}")
    cls = OPTIMIZERS[name]
    valid = [p for p in inspect.signature(cls).parameters if p != "params"]
    unknown = sorted(set(hyper) - set(valid))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for optimizer {name!r}; valid: {valid}")
    try:
        return cls(params, **hyper)
    except TypeError as e:
        raise ValueError(f"bad hyperparameters {hyper} for optimizer {name!r}: {e}") from None


def optimizer_hint(optimizer_fn: object) -> str:
    """The setting that sets a workload's learning rate, for messages: ``train.lr=...`` for the
    presets' optimizers (``gcode train``), else ``optimizer_fn``'s own."""
    from functools import partial
    if isinstance(optimizer_fn, partial) and optimizer_fn.func is make_optimizer:
        lr = optimizer_fn.keywords.get("lr")
        return f"train.lr={lr:g}" if isinstance(lr, (int, float)) else "train.lr"
    return "the learning rate optimizer_fn sets"


def optimizer_class(optimizer: torch.optim.Optimizer) -> str:
    """The optimizer's class as ``module.QualName`` (``torch.optim.adam.Adam``): what a
    checkpoint records, so that a resume with another optimizer is refused by name."""
    return f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"


def step(optimizer: torch.optim.Optimizer, optimizer_fn: object, what: str) -> None:
    """``optimizer.step()``; a torch error in it (a hyperparameter that overflows float32,
    a state of the wrong shape) becomes one WorkloadError naming ``optimizer_fn`` and the
    setting behind it, with ``what`` (the model and job)."""
    try:
        optimizer.step()
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise WorkloadError(f"optimizer_fn: the optimizer's step failed for {what}: "
                            f"{type(exc).__name__}: {detail} (is {optimizer_hint(optimizer_fn)} "
                            f"too large?)") from None
