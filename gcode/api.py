"""``gcode.fit``: train your own model, loss and dataset with a coding scheme, on Ray.

Three small typed configs, shaped like Ray Train's, say *how* to train; four functions say
*what*::

    result = gcode.fit(model_fn, loss_fn, dataset_fn, optimizer_fn,
                       coding=gcode.CodingConfig(scheme="msgc", B=1, W=2, lam=2),
                       scaling=gcode.ScalingConfig(workers=4),
                       run=gcode.RunConfig(jobs=40, batch_size=256, seed=0))

The configs are declared with every other setting in :mod:`gcode.config.settings` (docs/API.md
lists their fields); they are validated in one place, and errors name the field as you wrote it
(``coding.B: must be >= 1, got 0``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .config import (
    CheckpointConfig,
    CodingConfig,
    ConfigError,
    InjectConfig,
    LogConfig,
    RunConfig,
    ScalingConfig,
    from_train_config,
    public_field,
    speaking,
    to_train_config,
)
from .config.spelling import front


@dataclass
class FitResult:
    metrics: dict                # what ``gcode train --json`` prints (param_checksum included)
    models: list                 # the M trained nn.Modules, on CPU
    checkpoint: str | None       # the newest checkpoint folder, or None


def fit(model_fn, loss_fn, dataset_fn, optimizer_fn, *, coding: CodingConfig | None = None,
        scaling: ScalingConfig | None = None, run: RunConfig | None = None,
        collate_fn: Callable | None = None, eval_dataset_fn: Callable | None = None,
        metric_fn: Callable | None = None, progress: bool | Callable[[dict], None] = True,
        pool=None) -> FitResult:
    """Train live on Ray with a coding scheme and return the metrics and trained models.

    * ``model_fn() -> nn.Module``: gcode seeds torch before each call, so replicas start equal;
    * ``loss_fn(model, batch) -> Tensor`` of shape ``(len(batch),)``: the per-sample losses;
    * ``dataset_fn() -> Dataset``: a map-style dataset, called once on each worker, which reads
      only the items of its chunks (nothing of the dataset travels through Ray);
    * ``optimizer_fn(params) -> torch.optim.Optimizer``;
    * ``collate_fn``: turns a list of items into a batch (default
      ``torch.utils.data.default_collate``: tensors, tuples and dicts);
    * ``eval_dataset_fn``/``metric_fn``: the held-out set for ``RunConfig(eval_every=K)`` and
      an optional per-sample correctness for its accuracy;
    * ``progress``: True for a progress bar on stderr, or a callable given each round's record;
    * ``pool``: running worker actors to reuse (:func:`gcode.runtime.start_workers`).
    """
    with speaking("python"):
        return _fit(model_fn, loss_fn, dataset_fn, optimizer_fn, coding, scaling, run,
                    collate_fn, eval_dataset_fn, metric_fn, progress, pool)


def _fit(model_fn, loss_fn, dataset_fn, optimizer_fn, coding, scaling, run, collate_fn,
         eval_dataset_fn, metric_fn, progress, pool) -> FitResult:
    from .runtime.run import execute
    from .train import Workload
    workload = Workload(model_fn, loss_fn, dataset_fn, optimizer_fn, collate_fn, eval_dataset_fn,
                        metric_fn, name=getattr(model_fn, "__name__", "custom"))
    run = run if run is not None else RunConfig()
    cfg = to_train_config(coding or CodingConfig(), scaling or ScalingConfig(), run)
    if run.tags.get("model"):
        workload = dataclasses.replace(workload, name=run.tags["model"])
    monitor = None
    if run.monitor:
        from .telemetry.monitor import MonitorServer
        monitor = MonitorServer(run.monitor, token=run.monitor_token)
        print(f"monitor: serving on {' and '.join(monitor.addresses)} (gcode watch "
              f"{monitor.target})", file=sys.stderr)
    bar = _ProgressBar() if progress is True else None
    try:
        metrics, models = execute(cfg, workload, pool=pool, monitor=monitor,
                                  progress=bar.update if bar else (progress or None))
    except ConfigError as exc:  # found at run time (the dataset's size, a GPU): name it as set
        if front() != "python":
            raise
        raise exc.renamed(public_field(exc.field)) from None
    finally:
        if bar is not None:
            bar.close()
        if monitor is not None:
            monitor.close()
    return FitResult(metrics, models, metrics.get("checkpoint"))


class _ProgressBar:
    """A tqdm bar on stderr, created at the first round (setup is reported separately)."""

    def __init__(self):
        self.bar = None

    def update(self, rec: dict) -> None:
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=rec["rounds"], desc="train", unit="round", file=sys.stderr,
                            leave=False)
        loss = rec.get("loss")
        self.bar.set_postfix_str(f"decoded {rec['decoded_jobs']}/{rec['jobs']} "
                                 f"stragglers {len(rec['stragglers'])} waits {rec['waits']}"
                                 + (f" loss {loss:.4f}" if loss is not None else ""), refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["CheckpointConfig", "CodingConfig", "FitResult", "InjectConfig", "LogConfig",
           "RunConfig", "ScalingConfig", "fit", "from_train_config", "to_train_config"]
