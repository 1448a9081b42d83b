"""Gilbert–Elliott delays: each worker is a two-state (good/bad) Markov chain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import require_nonnegative, require_positive, require_probability
from .base import DelayModel, check_shape


@dataclass(frozen=True)
class GilbertElliottDelay(DelayModel):
    """Independent per-worker good/bad Markov chains; the bad state is slow.

    Each chain starts from the stationary distribution, so every round is bad with probability
    p_good_to_bad / (p_good_to_bad + p_bad_to_good). A good round takes base·(1+jitter·U), a bad
    one base·slowdown·(1+jitter·U), U ~ U(0,1); slowdown > 1+jitter makes every bad time exceed
    every good time.
    """

    p_good_to_bad: float = 0.05
    p_bad_to_good: float = 0.5
    base: float = 1.0
    slowdown: float = 3.0
    jitter: float = 0.05

    def __post_init__(self) -> None:
        require_probability("p_good_to_bad", self.p_good_to_bad)
        require_probability("p_bad_to_good", self.p_bad_to_good)
        if self.p_good_to_bad + self.p_bad_to_good == 0:
            raise ValueError(
                "p_good_to_bad and p_bad_to_good must not both be 0 (no stationary distribution)"
            )
        require_positive("base", self.base)
        require_nonnegative("jitter", self.jitter)
        if require_positive("slowdown", self.slowdown) <= 1 + self.jitter:
            raise ValueError(
                f"slowdown must exceed 1+jitter = {1 + self.jitter:g}, got slowdown={self.slowdown}"
            )

    @property
    def stationary_bad(self) -> float:
        """Long-run fraction of bad rounds: p_good_to_bad / (p_good_to_bad + p_bad_to_good)."""
        return self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good)

    def pattern(self, rounds: int, n: int, seed: int | None = None) -> np.ndarray:
        """Bad-state mask (rounds, n), bool; the same one ``sample`` with this seed is built on."""
        return self._states(*check_shape(rounds, n), np.random.default_rng(seed))

    def _states(self, rounds: int, n: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.random((rounds, n))
        bad = np.empty((rounds, n), dtype=bool)
        if rounds:
            bad[0] = u[0] < self.stationary_bad
        for r in range(1, rounds):
            bad[r] = np.where(bad[r - 1], u[r] >= self.p_bad_to_good, u[r] < self.p_good_to_bad)
        return bad

    def _sample(self, rounds: int, n: int, rng: np.random.Generator) -> np.ndarray:
        bad = self._states(rounds, n, rng)
        factor = np.where(bad, self.slowdown, 1.0)
        return self.base * factor * (1.0 + self.jitter * rng.random((rounds, n)))
