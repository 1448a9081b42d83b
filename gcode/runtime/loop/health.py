"""Stop a diverged run at once, instead of treating every worker as faulty until
``cluster.round_timeout_s``.

A worker whose result holds NaN or inf is normally a faulty worker: its result is dropped and
the round falls back. But when the *model* has diverged (a learning rate of 1e38, a checkpoint
of NaN weights) every worker returns non-finite values, forever. Checks tell the cases apart,
each costing nothing on a healthy run:

* before a job is issued and before a checkpoint, its model's parameters are finite
  (:meth:`gcode.runtime.loop.models.ModelBank.check_finite`);
* :meth:`Health.confirm_worker_fault` when a result is rejected as non-finite, and
  :meth:`Health.explain_workload_error` when a worker reports a non-finite loss: the coordinator
  computes that job's gradient itself (:class:`DirectGradient`, once per job). Non-finite there
  too means the model diverged, not the worker.

Either raises :class:`gcode.runtime.errors.DivergedError` naming the model, the job, the cause
and the last good checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable

from ..data import WorkSpec, job_indices
from ..errors import DivergedError


class DirectGradient:
    """Job t's full gradient computed on the coordinator in one pass, from its parameters as
    shipped (it reads the job's batch here, which a run does only to check: ``check_decode``
    and the diagnoses below)."""

    def __init__(self, spec: WorkSpec):
        self.spec = spec
        self._computer = None  # a TaskComputer, built on first use

    def __call__(self, t: int, params):
        import torch

        from gcode.train.compute import TaskComputer
        spec = self.spec
        if self._computer is None:
            self._computer = TaskComputer(spec.workload, "cpu", spec.buffers)
        self._computer.load(t, params)
        idx = job_indices(spec.seed, t, spec.batch_size, spec.num_samples)
        direct = torch.empty(spec.num_params, dtype=torch.float64)
        self._computer.coded_gradient([idx], [1.0], direct)
        return direct


class Health:
    """Tells a diverged model from a faulty worker. ``jobs`` is the JobBook (the jobs in flight
    and their parameters), ``models`` the ModelBank (which model a job trains, the optimizer's
    name in messages), ``hint()`` the last good checkpoint."""

    def __init__(self, jobs, models, direct: DirectGradient, hint: Callable[[], str]):
        self.jobs, self.models, self.direct, self.hint = jobs, models, direct, hint
        self.checked: set[int] = set()  # jobs already computed here

    def _diverged(self, t: int) -> bool:
        """Whether job t's loss or gradient, computed here at its parameters, is non-finite.
        False when this process cannot compute it (a dataset readable only on workers): then
        nothing is known beyond the worker's report."""
        import torch

        from gcode.train.workload import WorkloadError
        try:
            grad = self.direct(t, self.jobs.params(t))
        except WorkloadError:  # the workload's own non-finite loss check
            return True
        except Exception:  # noqa: BLE001 - a diagnosis must never replace the error it explains
            return False
        return not bool(torch.isfinite(grad).all())

    def explain_workload_error(self, cause: Exception) -> Exception:
        """The error to raise for a WorkloadError a worker reported: a DivergedError naming the
        model and job when a job in flight has a non-finite loss here too, else ``cause``'s
        WorkloadError as it was."""
        from gcode.train.workload import WorkloadError
        if "non-finite" in str(cause):
            for t in sorted(self.jobs.in_flight(), reverse=True):
                if self._diverged(t):
                    return DivergedError(f"model {self.models.model_of(t)} diverged: the loss of "
                                         f"job {t} at its parameters is not finite ({cause}; is "
                                         f"{self.models.lr_hint()} too large?){self.hint()}")
        return WorkloadError(str(cause))

    def confirm_worker_fault(self, r: int, w: int, jobs, reason: str | None) -> None:
        """A result of worker w in round r was rejected for ``reason``. When the values were
        non-finite, compute each of its jobs' gradients here (once per job): if that is not
        finite either, the model diverged and the run stops now."""
        if reason is None or "non-finite" not in reason:
            return
        for t in sorted(set(jobs) - self.checked):
            self.checked.add(t)
            if t in self.jobs.in_flight() and self._diverged(t):
                raise DivergedError(f"model {self.models.model_of(t)} diverged: the gradient of "
                                    f"job {t} is not finite, computed by worker {w} in round {r} "
                                    f"and again by the coordinator, so no worker is at fault (is "
                                    f"{self.models.lr_hint()} too large?){self.hint()}")


__all__ = ["DirectGradient", "Health"]
