"""Stop a diverged run at once, instead of treating every worker as faulty until
``cluster.round_timeout_s``.

A worker whose result holds NaN or inf is normally a faulty worker: its result is dropped and
the round falls back. But when the *model* has diverged (a learning rate of 1e38, a checkpoint
of NaN weights) every worker returns non-finite values, forever. Two checks tell the cases
apart, each costing nothing on a healthy run:

* :func:`check_params` before a job is issued: the parameters it would ship are finite (O(d)),
  and :func:`check_all_params` before a checkpoint, so that every checkpoint can be resumed;
* :func:`confirm_worker_fault` when a result is rejected as non-finite, and
  :func:`explain_workload_error` when a worker reports a non-finite loss: the coordinator
  computes that job's gradient itself (once per job). Non-finite there too means the model
  diverged, not the worker.

Either raises :class:`DivergedError` naming the model, the job, the cause and the last good
checkpoint (:mod:`gcode.runtime.errors`).
"""

from __future__ import annotations

from ..errors import DivergedError


def _hint(coord) -> str:
    written = coord.checkpointer.written if getattr(coord, "checkpointer", None) else []
    if written:
        return f"; the last good checkpoint is {written[-1]}"
    if getattr(coord, "resumed_from", None):
        return f"; this session resumed from {coord.resumed_from}, no checkpoint since"
    return "; no checkpoint was written (set checkpoint.dir to keep one)"


def _lr(coord) -> str:
    from gcode.train.optim import optimizer_hint
    return optimizer_hint(coord.spec.workload.optimizer_fn)


def check_params(coord, t: int) -> None:
    """Before job t is issued: the parameters of its model are finite."""
    import torch
    m = coord.model_of(t)
    params = coord.models[m].params
    bad = int(params.numel() - torch.isfinite(params).sum())
    if bad:
        after = f"after job {t - coord.M}'s update " if not coord.delayed and t >= coord.M else ""
        raise DivergedError(f"model {m} diverged: its parameters hold {bad} non-finite values "
                            f"{after}before job {t} (is {_lr(coord)} too large?){_hint(coord)}")


def check_all_params(coord, r: int) -> None:
    """Before a checkpoint at the boundary of round r: every model is finite, so a checkpoint
    is always one to resume from ("the last good checkpoint")."""
    import torch
    for m, model in enumerate(coord.models):
        bad = int(model.params.numel() - torch.isfinite(model.params).sum())
        if bad:
            raise DivergedError(f"model {m} diverged: its parameters hold {bad} non-finite values "
                                f"at round {r}, so no checkpoint of them is written (is "
                                f"{_lr(coord)} too large?){_hint(coord)}")


def _job_diverged(coord, t: int) -> bool:
    """Whether job t's loss or gradient, computed here at its parameters, is non-finite (the
    one time the coordinator reads a job's batch). False when this process cannot compute it
    (a dataset readable only on workers): then nothing is known beyond the worker's report."""
    import torch

    from gcode.train.workload import WorkloadError
    try:
        grad = coord._direct_gradient(t)
    except WorkloadError:  # the workload's own non-finite loss check
        return True
    except Exception:  # noqa: BLE001 - a diagnosis must never replace the error it explains
        return False
    return not bool(torch.isfinite(grad).all())


def explain_workload_error(coord, cause: Exception) -> Exception:
    """The error to raise for a WorkloadError a worker reported: a :class:`DivergedError` naming
    the model and job when a job in flight has a non-finite loss here too, else ``cause``'s
    WorkloadError as it was."""
    from gcode.train.workload import WorkloadError
    if "non-finite" in str(cause):
        for t in sorted(coord.jobs_ctx, reverse=True):
            if _job_diverged(coord, t):
                return DivergedError(f"model {coord.model_of(t)} diverged: the loss of job {t} at "
                                     f"its parameters is not finite ({cause}; is {_lr(coord)} too "
                                     f"large?){_hint(coord)}")
    return WorkloadError(str(cause))


def confirm_worker_fault(coord, r: int, w: int, jobs, reason: str | None) -> None:
    """A result of worker w in round r was rejected for ``reason``. When the values were
    non-finite, compute each of its jobs' gradients here (once per job): if that is not finite
    either, the model diverged and the run stops now."""
    if reason is None or "non-finite" not in reason:
        return
    checked: set = vars(coord).setdefault("_health_checked_jobs", set())
    for t in sorted(set(jobs) - checked):
        checked.add(t)
        if t in coord.jobs_ctx and _job_diverged(coord, t):
            raise DivergedError(f"model {coord.model_of(t)} diverged: the gradient of job {t} is "
                                f"not finite, computed by worker {w} in round {r} and again by "
                                f"the coordinator, so no worker is at fault (is {_lr(coord)} too "
                                f"large?){_hint(coord)}")


__all__ = ["check_all_params", "check_params", "confirm_worker_fault",
           "explain_workload_error"]
