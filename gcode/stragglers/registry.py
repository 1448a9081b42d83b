"""Building a delay model from a name and keyword parameters (e.g. from a config file)."""

from __future__ import annotations

import dataclasses

from .base import DelayModel
from .bursty import BurstyDelay
from .gilbert_elliott import GilbertElliottDelay
from .iid import ParetoDelay, ShiftedExponentialDelay
from .trace import TraceDelay

MODELS: dict[str, type[DelayModel]] = {
    "bursty": BurstyDelay,
    "gilbert_elliott": GilbertElliottDelay,
    "shifted_exp": ShiftedExponentialDelay,
    "pareto": ParetoDelay,
    "trace": TraceDelay,
}


def make_delay_model(name: str, **params: object) -> DelayModel:
    """The model registered as ``name`` built from ``params``; ValueError names an unknown model,
    an unknown parameter or a missing one, and the model's own checks name a bad value."""
    if name not in MODELS:
        raise ValueError(f"unknown delay model {name!r}; valid: {', '.join(MODELS)}")
    cls = MODELS[name]
    fields = [f for f in dataclasses.fields(cls) if f.init]
    valid = [f.name for f in fields]
    for key in params:
        if key not in valid:
            raise ValueError(
                f"unknown parameter {key!r} for model {name!r}; valid: {', '.join(valid)}"
            )
    for f in fields:
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in params:
            raise ValueError(f"missing parameter {f.name!r} for model {name!r}")
    return cls(**params)
