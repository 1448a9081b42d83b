"""One model's update from its decoded gradient: clip by global norm, optimizer step, scheduler step.

Every plane that updates a model (the coordinator's :class:`gcode.runtime.loop.models.ModelBank`,
the collective plane's replicas) calls :func:`step` (or its parts) with the model's decoded
gradient, so what a run does to a model is one function of that gradient.

Invariant: the update depends on the decoded gradient alone. Clipping is computed from it (its
L2 norm in float64, times ``scale``) and folded into the one cast to float32 that hands it to
the optimizer; the optimizer and the scheduler then see what an uncoded run's see. A coded run
whose decoded gradients equal the uncoded run's (bit-exact with FR codes, within the decode
error, about 1e-7 relative, otherwise) therefore clips, steps and schedules as the uncoded run
does. The scheduler steps exactly once per optimizer step of its model: with M models, each
model's schedule counts its own steps (jobs t = m, m + M, ...), not the run's rounds.

In the canonical-sum mode (``RunConfig(exact_blocks=K)``, :mod:`gcode.train.compute`) the decoded
fp64 sum is first rounded to fp32, once, the same way for every scheme (uncoded included), and
everything after (the norm, clipping, the mean, the optimizer) reads that rounded sum: decodes
that differ by fp64 rounding only (a cyclic code's coefficients, about 1e-13 relative) then
almost always give the same fp32 bits, and exact fp64 sums always do.

Clipping follows ``torch.nn.utils.clip_grad_norm_``: with total norm N of the mean gradient, the
gradient is multiplied by ``min(1, max_norm / (N + 1e-6))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .flat import FlatModel
from .optim import step as optimizer_step

#: torch's clip_grad_norm_ adds this to the norm before dividing
CLIP_EPS = 1e-6


@dataclass(frozen=True)
class StepReport:
    """What one update did: the mean gradient's L2 norm before clipping (float64), the factor
    clipping multiplied it by (1.0: not clipped), and the learning rate(s) the step used."""

    grad_norm: float
    clip_factor: float
    lr: tuple[float, ...]


def grad_norm(grad: torch.Tensor, scale: float = 1.0) -> float:
    """The L2 norm of ``scale · grad`` computed in float64 (the decoded gradient's precision)."""
    return float(torch.linalg.vector_norm(grad, dtype=torch.float64)) * abs(scale)


def clip_factor(norm: float, max_norm: float | None) -> float:
    """The factor clipping to ``max_norm`` multiplies a gradient of L2 norm ``norm`` by (torch's
    rule); 1.0 without clipping. ``norm`` may be an all-reduced one (a sharded gradient)."""
    if max_norm is None:
        return 1.0
    return min(1.0, max_norm / (norm + CLIP_EPS))


def learning_rates(optimizer: torch.optim.Optimizer) -> tuple[float, ...]:
    return tuple(float(group["lr"]) for group in optimizer.param_groups)


def apply(optimizer: torch.optim.Optimizer, scheduler=None, *, what: str = "",
          optimizer_fn: object = None) -> tuple[float, ...]:
    """``optimizer.step()`` on the gradients already in place, then ``scheduler.step()``; returns
    the learning rates the optimizer step used. A torch error in the step is a WorkloadError
    naming ``optimizer_fn`` (:func:`gcode.train.optim.step`)."""
    lrs = learning_rates(optimizer)
    optimizer_step(optimizer, optimizer_fn, what)
    if scheduler is not None:
        scheduler.step()
    return lrs


def step(model: FlatModel, optimizer: torch.optim.Optimizer, grad: torch.Tensor, scale: float,
         *, scheduler=None, max_grad_norm: float | None = None, what: str = "",
         optimizer_fn: object = None, unreached=(), round_sum: bool = False,
         skip_nonfinite: bool = False) -> StepReport:
    """Update ``model`` with its decoded gradient: ``g = scale · grad`` (the mean gradient;
    ``grad`` in float64 from the decode, any device), clipped to ``max_grad_norm`` (global L2
    norm, None: no clipping), cast once to float32 into the model's gradient, then the
    optimizer's step and the scheduler's. ``what`` names the model and job in a failing
    optimizer's message. The parameters ``unreached`` (indices: no sample's loss reached them)
    get no ``.grad``, so the optimizer skips them as plain torch does. ``round_sum`` (the
    canonical-sum mode): ``grad`` is rounded to float32 first (module docstring).
    ``skip_nonfinite``: a gradient whose norm is not finite (it holds a NaN or an infinity)
    steps nothing, and the report says so by its norm (one pass over ``grad`` instead of two)."""
    if round_sum:
        grad = grad.to(torch.float32).to(grad.dtype)
    norm = grad_norm(grad, scale)
    if skip_nonfinite and not math.isfinite(norm):
        return StepReport(norm, 1.0, learning_rates(optimizer))
    factor = clip_factor(norm, max_grad_norm)
    model.set_gradient(grad, scale * factor)
    model.set_ungraded(unreached)
    lrs = apply(optimizer, scheduler, what=what, optimizer_fn=optimizer_fn)
    return StepReport(norm, factor, lrs)


__all__ = ["CLIP_EPS", "StepReport", "apply", "clip_factor", "grad_norm", "learning_rates", "step"]
