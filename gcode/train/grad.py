"""Worker-side gradient math on flat parameter vectors.

Every flat vector orders parameters as ``model.parameters()`` does, each one flattened
row-major. Gradients are of the SUM of per-sample losses, so they add across chunks: over any
partition of the data, the chunk gradients sum to the full-data sum gradient.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[..., torch.Tensor]

_LOSSES: dict[str, LossFn] = {"cross_entropy": F.cross_entropy}


def set_single_thread() -> None:
    """Make torch use one intra-op thread (one per worker process avoids oversubscription)."""
    torch.set_num_threads(1)


def _loss_fn(loss: str) -> LossFn:
    if loss not in _LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid names: {', '.join(sorted(_LOSSES))}")
    return _LOSSES[loss]


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_flat(model: nn.Module, flat: np.ndarray, what: str) -> None:
    """Raise ValueError unless ``flat`` is a 1-D numpy array of ``num_params(model)`` values."""
    n = num_params(model)
    if not isinstance(flat, np.ndarray) or flat.shape != (n,):
        shape = getattr(flat, "shape", type(flat).__name__)
        raise ValueError(f"{what} must be a 1-D numpy array of {n} values, got {shape}")


def flatten_params(model: nn.Module) -> np.ndarray:
    """A fresh float32 copy of all parameters."""
    params = [p.detach().reshape(-1).to(torch.float32) for p in model.parameters()]
    if not params:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(params).numpy()


def load_flat_params(model: nn.Module, flat: np.ndarray) -> None:
    """Copy ``flat`` into the parameters; ``flat`` may be read-only and is never aliased."""
    check_flat(model, flat, "flat")
    src = torch.tensor(flat)  # copies, so read-only arrays are fine
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(src[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def chunk_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy"
) -> np.ndarray:
    """Flat float64 gradient of the summed loss over the chunk; zeros for an empty chunk.

    Leaves ``param.grad`` untouched. Parameters that do not require grad get zero gradient.
    """
    loss_fn = _loss_fn(loss)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    params = list(model.parameters())
    out = np.zeros(num_params(model), dtype=np.float64)
    trainable = [p for p in params if p.requires_grad]
    if len(y) == 0 or not trainable:
        return out
    with torch.enable_grad():
        total = loss_fn(model(x), y, reduction="sum")
        grads = iter(torch.autograd.grad(total, trainable, allow_unused=True))
    offset = 0
    for p in params:
        g = next(grads) if p.requires_grad else None
        if g is not None:
            out[offset : offset + p.numel()] = g.detach().reshape(-1).numpy()
        offset += p.numel()
    return out


def coded_combination(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk_indices: Sequence[np.ndarray],
    coefficients: Sequence[float],
    loss: str = "cross_entropy",
) -> np.ndarray:
    """``sum_c coefficients[c] * chunk_gradient(x[chunk_indices[c]], y[chunk_indices[c]])`` in float64."""
    if len(chunk_indices) != len(coefficients):
        raise ValueError(
            f"chunk_indices and coefficients must have the same length, "
            f"got {len(chunk_indices)} and {len(coefficients)}"
        )
    out = np.zeros(num_params(model), dtype=np.float64)
    for idx, coef in zip(chunk_indices, coefficients):
        rows = _rows(idx)
        out += float(coef) * chunk_gradient(model, x[rows], y[rows], loss)
    return out


def _rows(idx: np.ndarray) -> torch.Tensor:
    arr = np.asarray(idx)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"each chunk index array must be 1-D integer, got {arr.dtype} of shape {arr.shape}")
    return torch.tensor(arr.astype(np.int64, copy=False))  # copies, so read-only arrays are fine


def full_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy") -> float:
    """Mean loss over the batch, without building a graph (for logging)."""
    loss_fn = _loss_fn(loss)
    if len(y) == 0:
        raise ValueError("full_loss needs at least one sample")
    with torch.no_grad():
        return float(loss_fn(model(x), y, reduction="mean"))
