"""A model whose parameters and gradients live in two flat float32 buffers.

Every parameter is a view into ``params`` and its ``.grad`` a view into ``grads`` (in
``model.parameters()`` order), so loading a parameter vector, reading a gradient or handing a
decoded gradient to the optimizer is one contiguous copy, not one per tensor. Autograd
accumulates into an existing ``.grad`` in place, which keeps the gradient views bound.

A frozen parameter (``requires_grad=False`` when the model is built) keeps its place in both
vectors (its gradient is zero there) but never gets a ``.grad``, so an optimizer skips it as
plain torch does: weight decay or momentum never move it. Likewise a parameter that a step's
loss never reached (:meth:`FlatModel.set_ungraded`): zero in the vector, no ``.grad``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def exact_fp32() -> None:
    """Full fp32 matmuls and convolutions on GPUs (no TF32). TF32 rounds to 10 mantissa bits,
    so gradients of the same samples would differ by ~1e-3 between batch compositions, and
    coded and uncoded runs could not end with the same parameters."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


#: the cuBLAS workspace setting under which cuBLAS is deterministic (read at its first use)
CUBLAS_DETERMINISTIC = ":4096:8"


def deterministic_algorithms(on: bool) -> None:
    """Bit-identical replicas of a chunk, or the defaults back (``on`` False). Codes whose decode
    weighs replicas of a chunk with coefficients other than 1 (cyclic, group) amplify any
    difference between two workers' gradients of the same chunk; cuDNN's fastest backward
    algorithms add in a run-dependent order, so two GPUs computing the same chunk may differ in
    the last bits. ``on``: deterministic algorithms only (cuDNN's deterministic ones, cuBLAS
    with a fixed workspace; an op with none raises), no autotuning. A no-op for arithmetic on
    the CPU, whose kernels are deterministic for a fixed number of threads; safe to call there."""
    import os
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    torch.use_deterministic_algorithms(on)
    torch.utils.deterministic.fill_uninitialized_memory = False  # gcode writes all it reads
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


def set_single_thread() -> None:
    """Make torch use one intra-op thread (one per worker process avoids oversubscription)."""
    torch.set_num_threads(1)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class FlatModel:
    """``module`` moved to ``device`` with flat parameter and gradient storage."""

    def __init__(self, module: nn.Module, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.module = module.to(self.device)
        self.parameters = list(self.module.parameters())
        self.trainable = [p.requires_grad for p in self.parameters]
        sizes = [p.numel() for p in self.parameters]
        self.numel = int(sum(sizes))
        self.params = torch.empty(self.numel, dtype=torch.float32, device=self.device)
        self.grads = torch.zeros(self.numel, dtype=torch.float32, device=self.device)
        self.grad_views: list[torch.Tensor] = []
        offset = 0
        with torch.no_grad():
            for p, size in zip(self.parameters, sizes):
                view = self.params[offset: offset + size].view_as(p)
                view.copy_(p.data)
                p.data = view
                self.grad_views.append(self.grads[offset: offset + size].view_as(p))
                offset += size
        self.bind_grads()

    def bind_grads(self) -> None:
        """Point every trainable ``param.grad`` at its view of ``grads`` (after anything replaced
        them); a frozen parameter's ``.grad`` is None."""
        for p, g, trainable in zip(self.parameters, self.grad_views, self.trainable):
            if not trainable:
                p.grad = None
            elif p.grad is None or p.grad.data_ptr() != g.data_ptr():
                p.grad = g

    def release_grads(self) -> None:
        """Drop every ``param.grad``: a backward pass then stores its gradients without adding
        them to old ones (one pass over the gradient memory less than into bound ``grads``)."""
        for p in self.parameters:
            p.grad = None

    def ungraded(self, everything: bool = False) -> list[int]:
        """Indices of the trainable parameters without a ``.grad`` (after :meth:`release_grads`
        and a backward pass: those it did not reach); every trainable one when ``everything``."""
        return [i for i, (p, trainable) in enumerate(zip(self.parameters, self.trainable))
                if trainable and (everything or p.grad is None)]

    def set_ungraded(self, indices) -> None:
        """Drop the ``.grad`` of parameters ``indices`` (ones no sample's loss reached), so an
        optimizer skips them as plain torch does."""
        for i in indices:
            self.parameters[i].grad = None

    def gather_grads(self, out: torch.Tensor) -> None:
        """``out[:] =`` the flat gradient left by a backward pass after :meth:`release_grads`
        (zero for a parameter that received none; sparse gradients are densified)."""
        with torch.no_grad():
            for p, view in zip(self.parameters, self.flat_views(out)):
                if p.grad is None:
                    view.zero_()
                else:
                    view.copy_(p.grad.to_dense() if p.grad.is_sparse else p.grad)

    def flat_views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat vector shaped like each parameter, in order."""
        views, offset = [], 0
        for p in self.parameters:
            views.append(flat[offset: offset + p.numel()].view_as(p))
            offset += p.numel()
        return views

    def load(self, flat: np.ndarray | torch.Tensor) -> None:
        """Copy a flat parameter vector (numpy or tensor, any device; never aliased) in."""
        if isinstance(flat, np.ndarray):
            if flat.shape != (self.numel,):
                raise ValueError(f"parameter vector has shape {flat.shape}, expected ({self.numel},)")
            if self.device.type == "cpu":
                np.copyto(self.params.numpy(), flat, casting="same_kind")
                return
            flat = as_tensor(flat)
        with torch.no_grad():
            self.params.copy_(flat)

    def snapshot(self) -> np.ndarray:
        """A fresh float32 numpy copy of the parameters (on the host)."""
        return self.params.detach().to("cpu", copy=True).numpy()

    def set_gradient(self, grad: torch.Tensor, scale: float) -> None:
        """``grads = grad · scale``, formed in ``grad``'s precision (fp64 decode) on its device,
        then cast to float32 before it moves (half the bytes to copy)."""
        self.bind_grads()
        with torch.no_grad():
            if grad.dtype == torch.float32 and grad.device == self.grads.device:
                torch.mul(grad, scale, out=self.grads)  # the same product, without a temporary
            else:
                self.grads.copy_(grad.mul(scale).to(torch.float32))


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over ``array`` without copying; read-only arrays (Ray's) are only ever read."""
    if not array.flags.writeable:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(array)
    return torch.from_numpy(array)

