"""The delay-model interface and the paper's straggler-detection rule."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ._validate import require_int, require_nonnegative


class DelayModel(ABC):
    """A seeded generator of per-worker round times.

    Subclasses implement ``_sample``; ``sample`` validates the shape, seeds a fresh
    ``numpy.random.Generator`` and so makes every model reproducible per seed.
    """

    def sample(self, rounds: int, n: int, seed: int | None = None) -> np.ndarray:
        """Per-worker round times in seconds, shape (rounds, n), float64, all > 0. Same seed -> same array."""
        return self._sample(*check_shape(rounds, n), np.random.default_rng(seed))

    @abstractmethod
    def _sample(self, rounds: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``sample`` with validated arguments; draw every random number from ``rng``."""


def check_shape(rounds: int, n: int) -> tuple[int, int]:
    """Validate a requested (rounds, n): rounds >= 0, n >= 1."""
    return require_int("rounds", rounds, 0), require_int("n", n, 1)


def detect_stragglers(times: np.ndarray, mu: float) -> np.ndarray:
    """The paper's rule: worker i straggles in round r iff times[r, i] > (1+mu) * min(times[r]).

    ``times`` has shape (rounds, n); the result is a bool mask of the same shape. The fastest
    worker of a round never straggles.
    """
    mu = require_nonnegative("mu", mu)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 2 or times.shape[1] == 0:
        raise ValueError(f"times must have shape (rounds, n) with n >= 1, got shape {times.shape}")
    return times > (1.0 + mu) * times.min(axis=1, keepdims=True)
