"""Memoryless delay models: every (round, worker) time is drawn independently."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import require_positive
from .base import DelayModel


@dataclass(frozen=True)
class ShiftedExponentialDelay(DelayModel):
    """time = shift + Exp(rate), iid; mean shift + 1/rate, never below shift."""

    shift: float = 1.0
    rate: float = 2.0

    def __post_init__(self) -> None:
        require_positive("shift", self.shift)
        require_positive("rate", self.rate)

    def _sample(self, rounds: int, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.shift + rng.exponential(1.0 / self.rate, size=(rounds, n))


@dataclass(frozen=True)
class ParetoDelay(DelayModel):
    """Classic Pareto with x_m = scale: time = scale·(1 + Lomax(alpha)), iid, never below scale.

    The mean scale·alpha/(alpha−1) is finite only for alpha > 1, the variance only for alpha > 2.
    """

    scale: float = 1.0
    alpha: float = 2.5

    def __post_init__(self) -> None:
        require_positive("scale", self.scale)
        require_positive("alpha", self.alpha)

    def _sample(self, rounds: int, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.scale * (1.0 + rng.pareto(self.alpha, size=(rounds, n)))
