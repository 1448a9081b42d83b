"""Coded partial gradients: read a task's samples by index, then one weighted backward pass.

A mini-task asks for Σ_k c_k·∇L_k, where L_k = Σ_{i ∈ chunk k} loss_i. Because losses are
per-sample, that is the gradient of Σ_i w_i·loss_i with w_i = c_k for every sample i of chunk k:
one forward and one backward pass over the task's samples, whatever the number of chunks.
The task's coded loss Σ_k c_k·L_k comes with it, so a job's batch loss decodes exactly like its
gradient, without the coordinator ever reading the data.

With ``precision="bf16"`` the forward pass runs under ``torch.autocast(dtype=torch.bfloat16)``
and the backward pass in the dtypes it recorded; the parameters, the gradients a worker sends and
the decode stay float32/float64 (docs/TRAINING.md, "Mixed precision", says what stays exact).

Messages in float64 (cyclic codes whose decode could amplify fp32 rounding past 1e-6) instead
accumulate each chunk's fp32 gradient in fp64, which is the error model the code certifies.

The canonical-sum mode (``Workload.exact_blocks = K``, ``RunConfig(exact_blocks=K)``) goes one
step further: every chunk is a union of consecutive blocks of K samples of the job's batch
(:func:`gcode.codes.chunk_boundaries` with ``block=K``), and a task runs one forward and backward
pass per block, adding ``c_k`` times each block's fp32 gradient into an fp64 message. A block's
gradient is the same bits on every worker (the same K samples, in the same order, through the
same kernels), so a decoded gradient is an fp64 sum of the same per-block fp32 gradients
whatever the scheme, n, s, straggler pattern or order of arrival. An fp64 sum of fp32 values is
exact while their exponents spread over less than about 29 bits, so after the one rounding to
fp32 (:func:`gcode.train.step.step`) every scheme's gradient is the correctly rounded sum of the
block gradients: bit-identical, except for rare ties where an inexact fp64 sum lands on the
other side of an fp32 rounding boundary. Under bf16 autocast each block is canonical too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from .flat import FlatModel, deterministic_algorithms, exact_fp32
from .workload import (
    ModelBuffers,
    Workload,
    WorkloadError,
    build_model,
    check_finite_loss,
    check_losses,
    open_dataset,
    to_device,
)


class TaskError(RuntimeError):
    """The user's code raised while a task was computed; the message names the function
    (``dataset_fn``'s dataset, ``collate_fn``, ``loss_fn``) and the exception. The coordinator
    computes the job again to tell a faulty worker from faulty code
    (:meth:`gcode.runtime.loop.health.Health.judge`)."""


#: what a backward pass's "does not require grad" means for a loss_fn
_DETACHED = ("loss_fn returned losses that do not depend on the model's parameters (computed "
             "under torch.no_grad(), or detached); return losses computed from model(batch)")


@contextmanager
def blame(where: str) -> Iterator[None]:
    """Turn an exception of the user's code (not a WorkloadError, already named) into a
    TaskError naming ``where``."""
    try:
        yield
    except (WorkloadError, TaskError):
        raise
    except Exception as exc:  # noqa: BLE001 - any error of the user's code, named
        detail = " ".join(str(exc).split())[:300]
        if where == "backward" and "does not require grad" in detail:
            raise TaskError(f"{_DETACHED} (RuntimeError: {detail})") from None
        if where == "backward":
            where = "the backward pass of loss_fn's losses"
        raise TaskError(f"{where} raised {type(exc).__name__}: {detail}") from None


def fetch(dataset: Any, indices: np.ndarray) -> list:
    """The dataset's items at ``indices`` (``__getitems__`` when the dataset has it)."""
    idx = [int(i) for i in indices]
    getitems = getattr(dataset, "__getitems__", None)
    return list(getitems(idx)) if getitems is not None else [dataset[i] for i in idx]


class TaskComputer:
    """One worker's replica of the user's model and its view of the dataset. ``buffers`` are
    the coordinator's models' buffers (:func:`gcode.train.workload.model_buffers`): job t runs
    with model (t mod M)'s, so every replica computes with exactly the coordinator's model.
    ``deterministic`` (the run's codes need bit-identical replicas of a chunk, or not) sets
    torch's deterministic algorithms for this process when it computes on a GPU, and clears them
    otherwise (:func:`gcode.train.flat.deterministic_algorithms`); None leaves them as they are."""

    def __init__(self, workload: Workload, device: torch.device | str = "cpu", buffers: tuple = (),
                 deterministic: bool | None = None):
        self.workload = workload
        self.device = torch.device(device)
        exact_fp32()
        if deterministic is not None:  # CPU kernels are deterministic already
            deterministic_algorithms(deterministic and self.device.type == "cuda")
        self.dataset = open_dataset(workload.dataset_fn)
        # initial weights do not matter: every job loads its parameters (and its model's buffers)
        self.model = FlatModel(build_model(workload.model_fn, 0), self.device)
        self.model.module.train()
        self.buffers = ModelBuffers(self.model.module, buffers, self.device)
        #: the trainable parameters (indices in ``model.parameters``) that the last
        #: :meth:`coded_gradient`'s backward pass did not reach: plain torch leaves them no grad
        self.unreached: list[int] = []

    @property
    def num_params(self) -> int:
        return self.model.numel

    def load(self, job: int, flat) -> None:
        """Job ``job``'s parameters, and its model's buffers."""
        count = int(flat.size if isinstance(flat, np.ndarray) else flat.numel())
        if count != self.model.numel:
            raise WorkloadError(f"model_fn builds a model of {self.model.numel} parameters on this "
                                f"worker and one of {count} on the coordinator; it must build the "
                                f"same model in every process")
        self.buffers.load(job)
        self.model.load(flat)

    def host_batch(self, indices: np.ndarray) -> Any:
        """The samples at ``indices``, collated, in host memory (safe to run on another thread
        while this one computes, as long as no other thread reads the dataset meanwhile)."""
        with blame("dataset_fn's dataset"):
            items = fetch(self.dataset, indices)
        with blame("collate_fn" if self.workload.collate_fn is not None else "collating the items"):
            return self.workload.collate(items)

    def batch(self, indices: np.ndarray) -> Any:
        return to_device(self.host_batch(indices), self.device)

    def losses(self, batch: Any, count: int) -> torch.Tensor:
        """``loss_fn``'s per-sample losses, as float32 (under bf16 autocast with precision
        "bf16": the backward pass of what it records runs in the same dtypes)."""
        with self.autocast(), blame("loss_fn"):
            losses = self.workload.loss_fn(self.model.module, batch)
        losses = check_losses(losses, count)
        self.buffers.check_unchanged()
        return losses.float()

    def autocast(self):
        """The forward pass's autocast context: bf16 with precision "bf16", else none."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.workload.precision == "bf16")

    def coded_gradient(self, chunks: Sequence[np.ndarray], coefficients: Sequence[float],
                       out: torch.Tensor, host_batch: Any = None) -> float:
        """``out[:] = Σ_k c_k·∇L_k`` (in ``out``'s dtype, on ``out``'s device); returns the coded
        loss Σ_k c_k·L_k in float64. ``host_batch``, when given, is :meth:`host_batch` of the
        concatenated chunks, read ahead (float32 messages only)."""
        try:
            return self._coded_gradient(chunks, coefficients, out, host_batch)
        except RuntimeError as exc:
            if "deterministic implementation" not in str(exc):
                raise
            first = str(exc).strip().splitlines()[0]
            raise WorkloadError(
                f"model_fn or loss_fn uses an op with no deterministic GPU implementation "
                f"({first[:200]}); this code's decode needs GPU workers to compute replicas of "
                f"a chunk bit-identically: use gc_code \"fr\" (exact without that), replace "
                f"the op, or run the workers on CPUs") from None

    def _coded_gradient(self, chunks, coefficients, out: torch.Tensor, host_batch: Any) -> float:
        if out.dtype == torch.float64 or self.workload.exact_blocks:
            return self._per_block(chunks, coefficients, out, self.workload.exact_blocks)
        sizes = [len(c) for c in chunks]
        if sum(sizes) == 0:
            out.zero_()
            self.unreached = self.model.ungraded(everything=True)
            return 0.0
        weights = torch.repeat_interleave(
            torch.tensor(list(coefficients), dtype=torch.float32), torch.tensor(sizes)).to(self.device)
        if host_batch is None:
            host_batch = self.host_batch(np.concatenate(chunks))
        losses = self.losses(to_device(host_batch, self.device), len(weights))
        self.model.release_grads()  # autograd then hands over fresh gradients: no accumulation
        with blame("backward"):
            (losses * weights).sum().backward()
        self.unreached = self.model.ungraded()
        self.model.gather_grads(out)
        loss = float((losses.detach().double() * weights.double()).sum())
        check_finite_loss(loss)
        return loss

    def _per_block(self, chunks, coefficients, out: torch.Tensor, block: int) -> float:
        """``out = Σ_k c_k · Σ_{blocks b of chunk k} ∇L_b`` added in ``out``'s dtype, one backward
        pass per block of ``block`` consecutive rows of a chunk (0: the whole chunk)."""
        out.zero_()
        loss = 0.0
        unreached = set(self.model.ungraded(everything=True))  # reached by no block yet
        for chunk, c in zip(chunks, coefficients):
            step = block or max(1, len(chunk))
            for start in range(0, len(chunk), step):
                rows = chunk[start:start + step]
                losses = self.losses(self.batch(rows), len(rows))
                self.model.release_grads()
                with blame("backward"):
                    losses.sum().backward()
                unreached &= set(self.model.ungraded())
                self.model.gather_grads(self.model.grads)
                out.add_(self.model.grads, alpha=float(c))
                loss += float(c) * float(losses.detach().double().sum())
        self.unreached = sorted(unreached)
        check_finite_loss(loss)
        return loss


def evaluate(model: torch.nn.Module, workload: Workload, dataset: Any, device: torch.device,
             batch_size: int = 256) -> dict:
    """Mean loss (and accuracy, when the workload has a ``metric_fn``) over ``dataset``."""
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                idx = np.arange(start, min(start + batch_size, len(dataset)))
                batch = to_device(workload.collate(fetch(dataset, idx)), device)
                losses = check_losses(workload.loss_fn(model, batch), len(idx))
                total += float(losses.double().sum())
                if workload.metric_fn is not None:
                    correct += float(workload.metric_fn(model, batch).double().sum())
                count += len(idx)
    finally:
        model.train(was_training)
    out = {"loss": total / count}
    if workload.metric_fn is not None:
        out["accuracy"] = correct / count
    return out
