"""Callbacks and loggers for ``gcode.fit(..., callbacks=[...])``.

A :class:`Callback` gets five events, on the driver, in this order within a round: each job the
round decoded (:meth:`~Callback.on_job_decoded`), the round's held-out evaluation when it had
one (:meth:`~Callback.on_evaluation`), the round's record (:meth:`~Callback.on_round`); a
checkpoint once written (:meth:`~Callback.on_checkpoint`) and the result at the end
(:meth:`~Callback.on_end`). What each record holds is ``gcode.api.PROGRESS_FIELDS`` (and
docs/TRAINING.md, "The progress record").

A callback stops the run by calling :meth:`Callback.request_stop`: the run ends before its next
round, writes a checkpoint there when checkpointing, and reports ``stopped`` and
``stop_reason`` in its metrics (:class:`EarlyStopping` does so). A stopped run can be resumed.

Loggers: :class:`TensorBoardLogger` (torch's ``SummaryWriter``; ``pip install
'gcode[tensorboard]'``) and :class:`MLflowLogger` (``pip install 'gcode[mlflow]'``) record
every job's loss, learning rate and gradient norm against its model's step, and every held-out
evaluation. Importing this module imports neither torch nor the loggers' packages.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable


class Callback:
    """Override the events you need; each is a no-op here."""

    stop_reason: str | None = None

    def on_job_decoded(self, job: dict) -> None:
        """A job decoded and its model stepped: ``{job, model, loss, lr, grad_norm}`` (and
        ``clip_factor`` when clipped, ``rel_error`` under check_decode)."""

    def on_evaluation(self, evals: list[dict]) -> None:
        """Every model's held-out metrics: ``{round, model, updates, loss[, accuracy]}`` each."""

    def on_round(self, record: dict) -> None:
        """The round's record (``gcode.api.PROGRESS_FIELDS``)."""

    def on_checkpoint(self, path: str) -> None:
        """A checkpoint folder was written (complete and verified on read)."""

    def on_end(self, result) -> None:
        """The run ended: a :class:`gcode.FitResult`, stopped or not, or None when it raised."""

    def request_stop(self, reason: str) -> None:
        """End the run before its next round (the first request's reason is reported)."""
        if self.stop_reason is None:
            self.stop_reason = reason


class CallbackList:
    """The callbacks of one run, as the run calls them (:meth:`round` once per round record)."""

    def __init__(self, callbacks: Iterable[Callback]):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks: each must be a gcode.callbacks.Callback, got "
                                f"{type(cb).__name__}")

    def round(self, record: dict) -> None:
        for cb in self.callbacks:
            for job in record.get("decoded", ()):
                cb.on_job_decoded(job)
            if record.get("evals"):
                cb.on_evaluation(record["evals"])
            cb.on_round(record)

    def checkpoint(self, path: str) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(path)

    def end(self, result) -> None:
        for cb in self.callbacks:
            cb.on_end(result)

    def failed(self) -> None:
        """The run raised: every callback's ``on_end(None)``; a callback's own error there is
        dropped, so that the run's error is the one the caller sees."""
        for cb in self.callbacks:
            with contextlib.suppress(Exception):
                cb.on_end(None)

    def stop_reason(self) -> str | None:
        return next((cb.stop_reason for cb in self.callbacks if cb.stop_reason), None)


class EarlyStopping(Callback):
    """Stop once the held-out ``metric`` (``loss``, or ``accuracy``: higher is better) has not
    improved by more than ``min_delta`` for ``patience`` evaluations in a row. With M models
    the metric is their mean at each evaluation. Needs ``eval_dataset_fn`` and
    ``RunConfig(eval_every=K)``. ``best`` and ``evaluations`` say what it saw."""

    def __init__(self, patience: int = 3, min_delta: float = 0.0, metric: str = "loss"):
        if not (isinstance(patience, int) and patience >= 1):
            raise ValueError(f"EarlyStopping: patience must be an integer >= 1, got {patience!r}")
        if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta!r}")
        if metric not in ("loss", "accuracy"):
            raise ValueError(f"EarlyStopping: metric must be 'loss' or 'accuracy', got {metric!r}")
        self.patience, self.min_delta, self.metric = patience, float(min_delta), metric
        self.best = math.inf if metric == "loss" else -math.inf
        self.evaluations = self.bad = 0

    def on_evaluation(self, evals: list[dict]) -> None:
        values = [e[self.metric] for e in evals if self.metric in e]
        if not values:
            return
        value = sum(values) / len(values)
        self.evaluations += 1
        better = (value < self.best - self.min_delta if self.metric == "loss"
                  else value > self.best + self.min_delta)
        if better:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            self.request_stop(f"early stopping: held-out {self.metric} {value:.6g} has not "
                              f"improved on {self.best:.6g} for {self.bad} evaluations")


class _StepLogger(Callback):
    """Logs each decoded job against its model's step (``model{m}/loss``, ``/lr``,
    ``/grad_norm``) and each evaluation (``model{m}/eval_loss``, ``/eval_accuracy``)."""

    def __init__(self):
        self.steps: dict[int, int] = {}

    def log(self, name: str, value: float, step: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_job_decoded(self, job: dict) -> None:
        m = job["model"]
        step = self.steps[m] = self.steps.get(m, 0) + 1
        for key in ("loss", "lr", "grad_norm"):
            if job.get(key) is not None:
                self.log(f"model{m}/{key}", float(job[key]), step)

    def on_evaluation(self, evals: list[dict]) -> None:
        for e in evals:
            for key in ("loss", "accuracy"):
                if key in e:
                    self.log(f"model{e['model']}/eval_{key}", float(e[key]), int(e["updates"]))


class TensorBoardLogger(_StepLogger):
    """Writes to a TensorBoard ``log_dir`` with ``torch.utils.tensorboard.SummaryWriter``
    (needs the ``tensorboard`` package: ``pip install 'gcode[tensorboard]'``); also each round's
    ``round/duration_s`` and ``round/stragglers``."""

    def __init__(self, log_dir: str):
        super().__init__()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("TensorBoardLogger needs the tensorboard package: pip install "
                              "'gcode[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, name: str, value: float, step: int) -> None:
        self.writer.add_scalar(name, value, step)

    def on_round(self, record: dict) -> None:
        self.writer.add_scalar("round/duration_s", record["duration_s"], record["round"])
        self.writer.add_scalar("round/stragglers", len(record["stragglers"]), record["round"])

    def on_end(self, result) -> None:
        self.writer.close()


class MLflowLogger(_StepLogger):
    """Logs to MLflow, into an MLflow run started here (or the active one), and the run's final
    metrics at the end (needs ``mlflow``: ``pip install 'gcode[mlflow]'``). ``tracking_uri``
    (e.g. a local ``file:`` folder) and ``experiment`` are MLflow's own settings."""

    def __init__(self, experiment: str | None = None, run_name: str | None = None,
                 tracking_uri: str | None = None):
        super().__init__()
        try:
            import mlflow
        except ImportError:
            raise ImportError("MLflowLogger needs the mlflow package: pip install "
                              "'gcode[mlflow]'") from None
        self.mlflow = mlflow
        if tracking_uri is not None:
            mlflow.set_tracking_uri(tracking_uri)
        if experiment is not None:
            mlflow.set_experiment(experiment)
        self.owns_run = mlflow.active_run() is None
        self.run = mlflow.start_run(run_name=run_name) if self.owns_run else mlflow.active_run()

    def log(self, name: str, value: float, step: int) -> None:
        self.mlflow.log_metric(name, value, step=step)

    def on_end(self, result) -> None:
        if result is not None:
            final = {k: result.metrics.get(k) for k in ("runtime_s", "rounds", "waits", "decoded_jobs")}
            self.mlflow.log_metrics({k: float(v) for k, v in final.items() if v is not None})
        if self.owns_run:
            self.mlflow.end_run(status="FINISHED" if result is not None else "FAILED")


__all__ = ["Callback", "CallbackList", "EarlyStopping", "MLflowLogger", "TensorBoardLogger"]
