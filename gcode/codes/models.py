"""Straggler models: which straggler sets a scheme promises to tolerate, given the history.

``history`` is the sequence of recorded straggler masks of rounds 0 … r−1 (bool arrays of
length n); a round that fell back to waiting for everyone is recorded straggler-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class StragglerModel(ABC):
    #: how many past rounds ``conforms`` looks at
    memory: int

    @abstractmethod
    def conforms(self, history: Sequence[np.ndarray], stragglers: np.ndarray) -> bool:
        """True when adding ``stragglers`` as round len(history) keeps the pattern in the model."""


@dataclass(frozen=True)
class SPerRound(StragglerModel):
    """At most ``s`` stragglers in every round (GC's model)."""

    s: int
    memory = 0

    def __post_init__(self):
        if self.s < 0:
            raise ValueError(f"s must be >= 0, got s={self.s}")

    def conforms(self, history, stragglers) -> bool:
        return int(np.count_nonzero(stragglers)) <= self.s


@dataclass(frozen=True)
class Bursty(StragglerModel):
    """(B, W, λ)-bursty: in every window of W rounds at most λ distinct stragglers, and each
    worker's straggling rounds inside a window form one run of at most B consecutive rounds.

    Online check at round r: distinct stragglers over [r−W+1, r] ≤ λ, and no worker straggling
    now also straggled in [r−W+1, r−B].
    """

    B: int
    W: int
    lam: int

    def __post_init__(self):
        validate_bursty(self.B, self.W, self.lam)

    @property
    def memory(self) -> int:
        return self.W - 1

    def conforms(self, history, stragglers) -> bool:
        stragglers = np.asarray(stragglers, dtype=bool)
        r = len(history)
        window = history[max(0, r - self.W + 1): r]
        recent = np.logical_or.reduce(window, axis=0) if len(window) else np.zeros_like(stragglers)
        if int(np.count_nonzero(recent | stragglers)) > self.lam:
            return False
        early = history[max(0, r - self.W + 1): max(0, r - self.B + 1)]
        return not (len(early) and bool(np.any(np.logical_or.reduce(early, axis=0) & stragglers)))


def validate_bursty(B: int, W: int, lam: int, n: int | None = None) -> None:
    """Raise ValueError naming the bad field of a (B, W, λ) triple."""
    for name, value in (("B", B), ("W", W), ("lam", lam)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {name}={value!r}")
    if B < 1:
        raise ValueError(f"B must be >= 1, got B={B}")
    if W <= B:
        raise ValueError(f"B must satisfy 1 <= B < W, got B={B}, W={W}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got lam={lam}")
    if n is not None and lam > n:
        raise ValueError(f"lam must satisfy lam <= n, got lam={lam}, n={n}")
