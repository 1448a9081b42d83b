"""gcode: straggler-tolerant distributed training with gradient coding and sequential gradient coding.

``gcode.fit(model_fn, loss_fn, dataset_fn, optimizer_fn, coding=..., scaling=..., run=...)`` trains
on Ray (see :mod:`gcode.api`); importing gcode imports neither Ray nor torch.
"""

from .api import (
    CheckpointConfig,
    CodingConfig,
    FitResult,
    InjectConfig,
    LogConfig,
    RunConfig,
    ScalingConfig,
    fit,
    load_checkpoint,
)

__version__ = "0.2.0"

__all__ = ["CheckpointConfig", "CodingConfig", "FitResult", "InjectConfig", "LogConfig", "RunConfig",
           "ScalingConfig", "fit", "load_checkpoint"]
