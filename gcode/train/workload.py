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
    #: ``scheduler_fn(optimizer) -> LRScheduler``, stepped once per step of its model
    scheduler_fn: Callable[[torch.optim.Optimizer], Any] | None = None
    #: "fp32", or "bf16": workers run ``loss_fn``'s forward and backward under bf16 autocast
    #: (parameters, gradients, messages and the decode stay fp32/fp64)
    precision: str = "fp32"
    #: K > 0: the canonical-sum mode (``RunConfig(exact_blocks=K)``): one backward pass per
    #: block of K samples, summed in float64 (:mod:`gcode.train.compute`)
    exact_blocks: int = 0
    #: what a run log names the workload by ({model, dataset, optimizer, loss}): the presets'
    #: names; None: the user's classes and functions (:func:`describe`)
    labels: dict | None = None

    def __post_init__(self):
        for arg, arity in (("model_fn", 0), ("loss_fn", 2), ("dataset_fn", 0), ("optimizer_fn", 1)):
            _check_callable(arg, getattr(self, arg), arity)
        for arg, arity in (("collate_fn", 1), ("eval_dataset_fn", 0), ("metric_fn", 2),
                           ("scheduler_fn", 1)):
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
    "scheduler_fn": "scheduler_fn(optimizer) -> torch.optim.lr_scheduler.LRScheduler",
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
    """``model_fn()`` under torch seed ``seed`` (the global RNG is left as it was), checked:
    real float32 parameters, some of them trainable, and no state that forward passes change."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_fn()
    if not isinstance(model, nn.Module):
        raise WorkloadError(f"model_fn must return an nn.Module, got {type(model).__name__}")
    named = list(model.named_parameters())
    if not named:
        raise WorkloadError("model_fn returned a module with no parameters")
    lazy = [n for n, p in named if isinstance(p, nn.parameter.UninitializedParameter)]
    if lazy:
        raise WorkloadError(f"model_fn: parameter {lazy[0]!r} is uninitialized (a lazy module); "
                            f"give its input size, or run one forward pass inside model_fn")
    meta = [n for n, t in [*named, *model.named_buffers()] if t.is_meta]
    if meta:
        raise WorkloadError(f"model_fn: {meta[0]!r} is on the meta device (it holds no values); "
                            f"build the module on the CPU, or call to_empty(device='cpu') and "
                            f"initialize it inside model_fn")
    bad = sorted({str(p.dtype) for _, p in named if p.dtype != torch.float32})
    if bad:
        raise WorkloadError(f"model_fn: parameters must be float32 (gcode codes fp32 gradients "
                            f"and decodes in fp64), got {', '.join(bad)}")
    if not any(p.requires_grad for _, p in named):
        raise WorkloadError("model_fn: every parameter has requires_grad=False, so nothing would "
                            "train; leave the parameters to train trainable")
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            raise WorkloadError(
                f"model_fn: BatchNorm layer {name or type(m).__name__!r} keeps running statistics "
                f"that every forward pass changes, on each worker differently, so the models "
                f"gcode returns would not be the ones trained; use GroupNorm or LayerNorm (or "
                f"BatchNorm with track_running_stats=False)")
    return model


def build_optimizer(optimizer_fn: OptimizerFn, model: nn.Module) -> torch.optim.Optimizer:
    """``optimizer_fn(model.parameters())``, checked to be an optimizer over (some of) exactly
    those parameters: one over another module's would train nothing, silently."""
    optimizer = optimizer_fn(model.parameters())
    if not isinstance(optimizer, torch.optim.Optimizer):
        hint = (" (give a learning-rate scheduler as scheduler_fn=lambda optimizer: ...)"
                if isinstance(optimizer, (tuple, list)) else "")
        raise WorkloadError(f"optimizer_fn must return a torch.optim.Optimizer, got "
                            f"{type(optimizer).__name__}{hint}")
    params = list(model.parameters())
    trainable = {id(p) for p in params if p.requires_grad}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    foreign = sum(id(p) not in {id(q) for q in params} for p in held)
    if foreign or not any(id(p) in trainable for p in held):
        what = (f"{foreign} of its {len(held)} tensors are not the model's parameters" if foreign
                else "it holds none of the model's trainable parameters")
        raise WorkloadError(f"optimizer_fn must build its optimizer over the parameters it is "
                            f"given (optimizer_fn(params) -> torch.optim.Optimizer); {what}, so "
                            f"it would not train the model")
    return optimizer


def _name(fn: Any) -> str:
    fn = getattr(fn, "func", fn)  # a functools.partial: its function
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def describe(workload: Workload, module: nn.Module, optimizer: Any, dataset: Any) -> dict:
    """The names a run log records: ``workload.labels`` (the presets'), else the classes of the
    model, dataset and optimizer the user's functions built and the loss function's name."""
    if workload.labels:
        return dict(workload.labels)
    return {"model": type(module).__name__, "dataset": type(dataset).__name__,
            "optimizer": type(optimizer).__name__, "loss": _name(workload.loss_fn)}


def build_scheduler(scheduler_fn, optimizer: torch.optim.Optimizer):
    """``scheduler_fn(optimizer)``, checked to be an LR scheduler of exactly that optimizer that
    steps without arguments (gcode steps it once per optimizer step of its model)."""
    from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
    if scheduler_fn is None:
        return None
    scheduler = scheduler_fn(optimizer)
    if isinstance(scheduler, ReduceLROnPlateau):
        raise WorkloadError("scheduler_fn returned ReduceLROnPlateau, whose step needs a metric; "
                            "gcode steps the scheduler once per optimizer step without one: use "
                            "a step-based schedule, or early stopping on the held-out loss "
                            "(gcode.callbacks.EarlyStopping)")
    if not isinstance(scheduler, LRScheduler):
        raise WorkloadError(f"scheduler_fn must return a torch.optim.lr_scheduler.LRScheduler "
                            f"(scheduler_fn(optimizer) -> LRScheduler), got "
                            f"{type(scheduler).__name__}")
    if scheduler.optimizer is not optimizer:
        raise WorkloadError("scheduler_fn must build its scheduler over the optimizer it is given "
                            "(scheduler_fn(optimizer) -> LRScheduler); it returned one of another "
                            "optimizer, so it would not schedule the model's learning rate")
    return scheduler


def model_buffers(models: list[nn.Module]) -> tuple[dict[str, torch.Tensor], ...]:
    """Each model's buffers (name -> a CPU copy), to send to the workers with the run: one
    shared dict when every model has the same, none when the models have no buffers."""
    import itertools
    copies = [{n: b.detach().to("cpu", copy=True) for n, b in m.named_buffers()} for m in models]
    if not copies or not copies[0]:
        return ()
    first = copies[0]
    if all(c.keys() == first.keys() and all(_same(c[n], first[n]) for n in first)
           for c in itertools.islice(copies, 1, None)):
        return (first,)
    return tuple(copies)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal in dtype, shape and every value (NaN equal to NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if torch.equal(a, b):
        return True
    return a.is_floating_point() and torch.equal(a.isnan(), b.isnan()) and \
        torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


def _shapes(buffers: dict) -> str:
    return ", ".join(f"{n} {tuple(b.shape)}" for n, b in sorted(buffers.items()))[:300]


class ModelBuffers:
    """Loads model m's buffers (as the coordinator built them) into a worker's replica before
    job t of model m = t mod M, and refuses a forward pass that changes them: a worker's change
    would never reach the coordinator's model, so the returned model would not be the one
    trained."""

    def __init__(self, module: nn.Module, buffers: tuple, device: torch.device):
        self.module = module
        self.sets = [{n: b.to(device) for n, b in s.items()} for s in buffers]
        self.loaded: int | None = None
        mine = dict(module.named_buffers())
        if self.sets and (mine.keys() != self.sets[0].keys() or any(
                (b.shape, b.dtype) != (self.sets[0][n].shape, self.sets[0][n].dtype)
                for n, b in mine.items())):
            raise WorkloadError(f"model_fn builds other buffers on this worker "
                                f"({_shapes(mine)}) than on the coordinator "
                                f"({_shapes(self.sets[0])}); it must build the same model in "
                                f"every process")

    def load(self, job: int) -> None:
        if not self.sets:
            return
        m = job % len(self.sets)
        if m != self.loaded:
            mine = dict(self.module.named_buffers())
            with torch.no_grad():
                for name, ref in self.sets[m].items():
                    mine[name].copy_(ref)
            self.loaded = m

    def check_unchanged(self) -> None:
        """After a forward pass: every buffer still holds what was loaded."""
        if self.loaded is None:
            return
        mine = dict(self.module.named_buffers())
        for name, ref in self.sets[self.loaded].items():
            if name not in mine or not _same(mine[name], ref):
                self.loaded = None
                raise WorkloadError(f"model_fn: the forward pass changed buffer {name!r}; gcode "
                                    f"cannot keep state that forward passes change consistent "
                                    f"across workers (BatchNorm's running statistics, counters); "
                                    f"compute it outside the model, or make it a parameter")


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
