"""Optimizer construction by name, and stepping from a flat float64 gradient."""

from __future__ import annotations

import inspect
from typing import Iterable

import numpy as np
import torch
from torch import nn

from gcode.train.grad import check_flat

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


def apply_gradient(
    model: nn.Module, optimizer: torch.optim.Optimizer, flat_grad: np.ndarray, scale: float
) -> None:
    """Set each ``param.grad`` to its slice of ``flat_grad * scale`` (in the param's dtype), then step.

    ``flat_grad`` follows ``model.parameters()`` order; ``scale`` turns a summed gradient into a
    mean (1 / num_samples). The product is formed in float64 before the cast.
    """
    check_flat(model, flat_grad, "flat_grad")
    scaled = np.asarray(flat_grad, dtype=np.float64) * float(scale)  # a fresh, writable array
    offset = 0
    for p in model.parameters():
        g = torch.from_numpy(scaled[offset : offset + p.numel()]).view_as(p)
        p.grad = g.to(p.dtype)
        offset += p.numel()
    optimizer.step()
