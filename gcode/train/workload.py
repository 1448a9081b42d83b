"""What a user brings to ``gcode.fit``: a model factory, a per-sample loss, a dataset factory and
an optimizer factory, checked once with errors that name the argument.

Invariants the runtime relies on:
  * ``model_fn()`` runs under a fixed torch seed in every process, so all replicas of a model
    start equal, and its parameters are float32;
  * ``loss_fn(model, batch)`` returns one loss per sample (shape ``(len(batch),)``), so the
    gradient of Σ_i w_i·loss_i is Σ_i w_i·∇loss_i: a coded combination is one backward pass;
  * ``dataset_fn()`` builds the same map-style dataset in every process; items are read by index
    where they are needed and never shipped.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

ModelFn = Callable[[], nn.Module]
LossFn = Callable[[nn.Module, Any], torch.Tensor]
DatasetFn = Callable[[], Any]
OptimizerFn = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class WorkloadError(ValueError):
    """A user-supplied function or what it returned is unusable; the message names the argument."""


@dataclass(frozen=True)
class Workload:
    """The user's training problem. ``metric_fn(model, batch)`` (optional) returns per-sample
    correctness (bool or 0/1), reported as held-out accuracy; ``eval_dataset_fn`` (optional)
    builds the held-out set that ``RunConfig(eval_every=K)`` evaluates."""

    model_fn: ModelFn
    loss_fn: LossFn
    dataset_fn: DatasetFn
    optimizer_fn: OptimizerFn
    collate_fn: Callable[[list], Any] | None = None
    eval_dataset_fn: DatasetFn | None = None
    metric_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None
    name: str = "custom"    # a label for logs: the model preset, or the model_fn's name

    def __post_init__(self):
        for arg, arity in (("model_fn", 0), ("loss_fn", 2), ("dataset_fn", 0), ("optimizer_fn", 1)):
            _check_callable(arg, getattr(self, arg), arity)
        for arg, arity in (("collate_fn", 1), ("eval_dataset_fn", 0), ("metric_fn", 2)):
            if getattr(self, arg) is not None:
                _check_callable(arg, getattr(self, arg), arity)

    def collate(self, items: list) -> Any:
        if self.collate_fn is not None:
            return self.collate_fn(items)
        from torch.utils.data import default_collate
        return default_collate(items)


_USAGE = {
    "model_fn": "model_fn() -> nn.Module (gcode seeds torch before each call)",
    "loss_fn": "loss_fn(model, batch) -> Tensor of per-sample losses, shape (len(batch),)",
    "dataset_fn": "dataset_fn() -> a map-style torch.utils.data.Dataset",
    "optimizer_fn": "optimizer_fn(params) -> torch.optim.Optimizer",
    "collate_fn": "collate_fn(list of items) -> batch",
    "eval_dataset_fn": "eval_dataset_fn() -> a map-style torch.utils.data.Dataset",
    "metric_fn": "metric_fn(model, batch) -> Tensor of per-sample correctness, shape (len(batch),)",
}


def _check_callable(arg: str, fn: Any, arity: int) -> None:
    if not callable(fn):
        raise WorkloadError(f"{arg} must be callable as {_USAGE[arg]}; got {type(fn).__name__}")
    try:
        inspect.signature(fn).bind(*([None] * arity))
    except TypeError:
        raise WorkloadError(f"{arg} must be callable as {_USAGE[arg]}, i.e. with {arity} "
                            f"argument(s); its signature is {_signature(fn)}") from None
    except ValueError:  # builtins without a signature: trust them
        pass


def _signature(fn: Any) -> str:
    try:
        return f"{getattr(fn, '__name__', type(fn).__name__)}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return repr(fn)


def build_model(model_fn: ModelFn, seed: int) -> nn.Module:
    """``model_fn()`` under torch seed ``seed`` (the global RNG is left as it was), checked."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_fn()
    if not isinstance(model, nn.Module):
        raise WorkloadError(f"model_fn must return an nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    if not params:
        raise WorkloadError("model_fn returned a module with no parameters")
    bad = sorted({str(p.dtype) for p in params if p.dtype != torch.float32})
    if bad:
        raise WorkloadError(f"model_fn: parameters must be float32 (gcode codes fp32 gradients "
                            f"and decodes in fp64), got {', '.join(bad)}")
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        import warnings
        warnings.warn("model_fn: BatchNorm mixes the samples of a batch, so a coded gradient is "
                      "no longer the exact full-batch gradient, and its running statistics are "
                      "not trained on the coordinator; use GroupNorm or LayerNorm", stacklevel=2)
    return model


def open_dataset(dataset_fn: DatasetFn, arg: str = "dataset_fn") -> Any:
    """``dataset_fn()``, checked to be a non-empty map-style dataset."""
    dataset = dataset_fn()
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise WorkloadError(f"{arg} must return a map-style dataset (with __len__ and "
                            f"__getitem__), got {type(dataset).__name__}")
    size = len(dataset)
    if not isinstance(size, int) or size < 1:
        raise WorkloadError(f"{arg} returned a dataset of length {size!r}; it needs at least one item")
    return dataset


def check_losses(losses: Any, count: int, arg: str = "loss_fn") -> torch.Tensor:
    """``losses`` as returned by ``loss_fn`` for ``count`` samples, or a WorkloadError."""
    if not isinstance(losses, torch.Tensor):
        raise WorkloadError(f"{arg} must return a Tensor of per-sample losses with shape "
                            f"({count},), got {type(losses).__name__}")
    if losses.shape != (count,):
        hint = " (a scalar: use reduction='none' and reduce per sample)" if losses.dim() == 0 else ""
        raise WorkloadError(f"{arg} must return per-sample losses of shape ({count},) for a batch "
                            f"of {count}, got shape {tuple(losses.shape)}{hint}")
    if not losses.is_floating_point():
        raise WorkloadError(f"{arg} must return floating-point losses, got {losses.dtype}")
    return losses


def check_finite_loss(value: float, arg: str = "loss_fn") -> None:
    if not math.isfinite(value):
        raise WorkloadError(f"{arg} returned a non-finite loss ({value}); the model diverged or "
                            f"the data holds NaN/inf")


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (tensors nested in tuples, lists and dicts) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch
