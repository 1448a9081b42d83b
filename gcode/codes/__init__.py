"""Pure-numpy coding schemes: one state machine per scheme, shared by simulator and runtime.

This package imports neither Ray nor torch.
"""

from __future__ import annotations

from .base import Scheme, coded_task
from .baselines import GradientCoding, IgnoreStragglers, Uncoded
from .chunking import allocate_samples, chunk_boundaries, worker_samples
from .gc import DEFAULT_GC_CODE, GC_CODE_KINDS, CyclicRepetitionCode, FractionalRepetitionCode, make_gc_code
from .gradient_code import DecodeError, GradientCode
from .group import GroupCode
from .models import Bursty, SPerRound, StragglerModel, validate_bursty
from .msgc import MultiplexedSGC
from .plan import Decoding, MiniTask, Plan, ResultKey, TaskBlock
from .srsgc import SelectiveRepeatSGC, srsgc_s

SCHEMES = {
    "uncoded": (Uncoded, ()),
    "ignore": (IgnoreStragglers, ("s",)),
    "gc": (GradientCoding, ("s", "gc_code")),
    "srsgc": (SelectiveRepeatSGC, ("B", "W", "lam", "gc_code")),
    "msgc": (MultiplexedSGC, ("B", "W", "lam", "gc_code")),
}
_REQUIRED = {"uncoded": (), "ignore": ("s",), "gc": ("s",), "srsgc": ("B", "W", "lam"),
             "msgc": ("B", "W", "lam")}


def make_scheme(name: str, n: int, jobs: int | None = None, **params) -> Scheme:
    """Build scheme ``name`` for ``n`` workers; ``params`` are the scheme's own parameters.

    Raises ValueError naming the bad or missing parameter. ``None`` values are ignored, so CLI
    defaults can be passed straight through.
    """
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; valid: {', '.join(SCHEMES)}")
    cls, accepted = SCHEMES[name]
    params = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise ValueError(f"unknown parameter {unknown[0]!r} for scheme {name!r}; valid: {valid}")
    missing = [p for p in _REQUIRED[name] if p not in params]
    if missing:
        raise ValueError(f"scheme {name!r} needs parameter {missing[0]!r}")
    if not isinstance(n, (int,)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got n={n!r}")
    return cls(n, jobs=jobs, **params)


__all__ = [
    "DEFAULT_GC_CODE", "GC_CODE_KINDS", "SCHEMES", "Bursty", "CyclicRepetitionCode", "DecodeError",
    "Decoding", "FractionalRepetitionCode", "GradientCode", "GradientCoding", "GroupCode",
    "IgnoreStragglers", "MiniTask", "MultiplexedSGC", "Plan", "ResultKey", "SPerRound", "Scheme",
    "SelectiveRepeatSGC", "StragglerModel", "TaskBlock", "Uncoded", "allocate_samples",
    "chunk_boundaries", "coded_task", "make_gc_code", "make_scheme", "srsgc_s", "validate_bursty",
    "worker_samples",
]
