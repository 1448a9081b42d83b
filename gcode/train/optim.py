"""Optimizer construction by name (the presets' ``optimizer_fn``)."""

from __future__ import annotations

import inspect
from typing import Iterable

import torch

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
}


def make_optimizer(name: str, params: Iterable[torch.Tensor], **hyper: object) -> torch.optim.Optimizer:
    """Build optimizer ``name`` ("sgd" or "adam"); ``hyper`` passes through to torch (lr, momentum, ...)."""
    if name not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(sorted(_OPTIMIZERS))}")
    cls = _OPTIMIZERS[name]
    valid = [p for p in inspect.signature(cls).parameters if p != "params"]
    unknown = sorted(set(hyper) - set(valid))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for optimizer {name!r}; valid: {valid}")
    try:
        return cls(params, **hyper)
    except TypeError as e:
        raise ValueError(f"bad hyperparameters {hyper} for optimizer {name!r}: {e}") from None
