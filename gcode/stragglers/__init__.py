"""Straggler delay models (pure numpy): seeded generators of per-worker round times.

Every model is a frozen, validated dataclass implementing ``DelayModel.sample(rounds, n, seed)``,
which returns a (rounds, n) float64 array of times > 0 that depends only on the seed.
"""

from .base import DelayModel, detect_stragglers
from .bursty import BurstyDelay, bursty_conforms
from .gilbert_elliott import GilbertElliottDelay
from .iid import ParetoDelay, ShiftedExponentialDelay
from .registry import MODELS, make_delay_model
from .trace import TraceDelay, TraceError, load_trace

__all__ = [
    "MODELS",
    "BurstyDelay",
    "DelayModel",
    "GilbertElliottDelay",
    "ParetoDelay",
    "ShiftedExponentialDelay",
    "TraceDelay",
    "TraceError",
    "bursty_conforms",
    "detect_stragglers",
    "load_trace",
    "make_delay_model",
]
