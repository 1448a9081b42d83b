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
    missing = [f.name for f in fields if f.name not in params and _required(f)]
    if missing:
        raise ValueError(f"missing parameter{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(m) for m in missing)} for model {name!r}; it takes "
                         f"{signature(name)}")
    return cls(**params)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def signature(name: str) -> str:
    """``name``'s parameters with their defaults, e.g. ``B, W, lam, base=1.0, ...``."""
    fields = [f for f in dataclasses.fields(MODELS[name]) if f.init]
    return ", ".join(f.name if _required(f) else f"{f.name}={f.default!r}" for f in fields)


def describe_models(exclude: tuple[str, ...] = ("trace",)) -> str:
    """One line per model, ``name(param, param=default, ...)``, for --help texts."""
    return "; ".join(f"{name}({signature(name)})" for name in MODELS if name not in exclude)
