"""Tell a faulty worker from faulty code or a diverged model, at once, instead of treating every
worker as faulty until ``cluster.round_timeout_s``.

A worker whose result holds NaN or inf, or whose call raised, is normally a faulty worker: its
result is dropped and the round falls back. But when the *model* has diverged (a learning rate
of 1e38, a checkpoint of NaN weights), the data holds NaN, or the user's code raises on every
batch (a dataset whose ``__len__`` claims more items than it has, a loss_fn returning detached
losses), every worker fails, forever. Checks tell the cases apart, each costing nothing on a
healthy run:

* before a job is issued and before a checkpoint, its model's parameters are finite
  (:meth:`gcode.runtime.loop.models.ModelBank.check_finite`);
* :meth:`Health.confirm_worker_fault` when a result is rejected as non-finite, and
  :meth:`Health.judge` when the user's code raised on a worker (a
  :class:`gcode.runtime.transport.base.CodeFailure`: a non-finite loss, a TaskError): the
  coordinator computes the jobs in flight itself (:class:`DirectGradient`, once per job).
  When that fails too, the run stops with one line: the code's error as the worker saw it, or
  which items of the batch hold NaN or inf, or a :class:`gcode.runtime.errors.DivergedError`
  naming the model, the job, the learning rate and the last good checkpoint. When it succeeds,
  only that worker was at fault: its call counts as failed and the run goes on.

A check that every process fails alike (a WorkloadError other than a non-finite loss: the
losses' shape, a buffer the forward pass changed) stops the run at once without recomputing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..data import WorkSpec, job_indices
from ..errors import DivergedError


class DirectGradient:
    """Job t's full gradient computed on the coordinator in one pass, from its parameters as
    shipped (it reads the job's batch here, which a run does only to check: ``check_decode``
    and the diagnoses below)."""

    def __init__(self, spec: WorkSpec):
        self.spec = spec
        self._computer = None  # a TaskComputer, built on first use

    @property
    def computer(self):
        from gcode.train.compute import TaskComputer
        if self._computer is None:
            self._computer = TaskComputer(self.spec.workload, "cpu", self.spec.buffers)
        return self._computer

    def indices(self, t: int):
        spec = self.spec
        return job_indices(spec.seed, t, spec.batch_size, spec.num_samples)

    def __call__(self, t: int, params):
        import torch
        computer = self.computer
        computer.load(t, params)
        direct = torch.empty(self.spec.num_params, dtype=torch.float64)
        computer.coded_gradient([self.indices(t)], [1.0], direct)
        return direct

    def nonfinite_items(self, t: int) -> list[int] | None:
        """The dataset indices of job t's items that hold NaN or inf (in any floating tensor of
        the collated batch), or None when this process cannot read them."""
        import numpy as np
        import torch
        idx = self.indices(t)
        try:
            batch = self.computer.host_batch(idx)
        except Exception:  # noqa: BLE001 - unknown here; the caller says what it knows
            return None
        bad = np.zeros(len(idx), dtype=bool)
        for leaf in _leaves(batch):
            if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.dim() > 0 \
                    and leaf.shape[0] == len(idx):
                bad |= ~torch.isfinite(leaf.reshape(len(idx), -1)).all(dim=1).numpy()
        return sorted(int(i) for i in idx[bad])


def _leaves(batch: Any):
    if isinstance(batch, dict):
        for value in batch.values():
            yield from _leaves(value)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            yield from _leaves(value)
    else:
        yield batch


def same_failure(a: Exception, b: Exception) -> bool:
    """Whether two errors of the user's code are one failure: the same class, and the same
    function and exception named before the first colon (``dataset_fn's dataset raised
    IndexError``), whatever the details after it."""
    return type(a) is type(b) and str(a).split(":")[0] == str(b).split(":")[0]


class Health:
    """Tells a faulty worker from faulty code or a diverged model. ``jobs`` is the JobBook (the
    jobs in flight and their parameters), ``models`` the ModelBank (which model a job trains,
    the optimizer's learning rate for messages), ``stats`` the RunStats (each model's updates),
    ``hint()`` the last good checkpoint."""

    def __init__(self, jobs, models, direct: DirectGradient, stats, hint: Callable[[], str]):
        self.jobs, self.models, self.direct, self.stats, self.hint = jobs, models, direct, stats, hint
        self.checked: set[int] = set()  # jobs already computed here

    def _recompute(self, t: int, where: str, failure: Exception | None = None) -> Exception | None:
        """Job t computed here at its parameters: the error to stop the run with when that fails
        too (``where``: who failed first; ``failure``: how, when the user's code raised), None
        when it succeeds, or fails otherwise than ``failure`` did, or cannot run here (a dataset
        readable only on workers): then nothing is known beyond the worker's report."""
        import torch

        from gcode.train.compute import TaskError
        from gcode.train.workload import WorkloadError
        self.checked.add(t)
        try:
            grad = self.direct(t, self.jobs.params(t))
        except TaskError as exc:
            if failure is None or not same_failure(exc, failure):
                return None
            return WorkloadError(f"{exc} ({where}, and again on the coordinator computing job "
                                 f"{t}: the code fails, not a worker)")
        except WorkloadError as exc:
            return self._nonfinite(t, "loss", where) if "non-finite" in str(exc) else exc
        except Exception:  # noqa: BLE001 - a diagnosis must never replace the error it explains
            return None
        if not bool(torch.isfinite(grad).all()):
            return self._nonfinite(t, "gradient", where)
        return None

    def _nonfinite(self, t: int, what: str, where: str) -> Exception:
        """Why job t's ``what`` (loss or gradient) is not finite here too: NaN or inf in its
        batch, the user's loss at a model that never stepped, or a diverged model."""
        from gcode.train.workload import WorkloadError
        m = self.models.model_of(t)
        items = self.direct.nonfinite_items(t)
        if items:
            shown = ", ".join(map(str, items[:8])) + (", ..." if len(items) > 8 else "")
            return WorkloadError(f"job {t}'s batch holds NaN or inf in {len(items)} item(s) of "
                                 f"dataset_fn's dataset (indices {shown}), so its loss cannot be "
                                 f"finite ({where}, and again on the coordinator): clean or drop "
                                 f"those items")
        if not self.stats.updates[m]:
            return WorkloadError(f"loss_fn returned a non-finite {what} for job {t} at model {m}'s "
                                 f"initial parameters, on finite data ({where}, and again on the "
                                 f"coordinator): check loss_fn and model_fn")
        return DivergedError(f"model {m} diverged: the {what} of job {t} at its parameters is not "
                             f"finite ({where}, and again on the coordinator, so no worker is at "
                             f"fault; is {self.models.lr_hint()} too large?){self.hint()}")

    def judge(self, failure) -> None:
        """A worker's call failed in the user's code (``failure``, a CodeFailure): raise the
        error to stop the run with when the code is at fault, return when only that worker is
        (the call then counts as failed)."""
        from gcode.train.workload import WorkloadError
        error = failure.error
        if isinstance(error, WorkloadError) and "non-finite" not in str(error):
            raise WorkloadError(str(error))
        for t in sorted(set(self.jobs.in_flight()) - self.checked, reverse=True):
            problem = self._recompute(t, f"a worker's call {failure}"[:400], error)
            if problem is not None:
                raise problem

    def confirm_worker_fault(self, r: int, w: int, jobs, reason: str | None) -> None:
        """A result of worker w in round r was rejected for ``reason``. When the values were
        non-finite, compute each of its jobs' gradients here (once per job): if that is not
        finite either, the model diverged (or the data holds NaN) and the run stops now."""
        if reason is None or "non-finite" not in reason:
            return
        for t in sorted(set(jobs) - self.checked):
            if t in self.jobs.in_flight():
                problem = self._recompute(t, f"computed by worker {w} in round {r}")
                if problem is not None:
                    raise problem


__all__ = ["DirectGradient", "Health"]
