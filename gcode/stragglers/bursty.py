"""(B, W, λ)-bursty straggler patterns (SCHEMES.md, "Straggler models") and a delay model that
generates only conforming ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codes.models import Bursty, validate_bursty
from ._validate import require_nonnegative, require_positive, require_probability
from .base import DelayModel, check_shape


def bursty_conforms(history: np.ndarray, stragglers: np.ndarray, B: int, W: int, lam: int) -> bool:
    """Whether straggler set ``stragglers`` (n,) keeps the pattern (B, W, λ)-bursty as the round
    after ``history`` (rounds_so_far, n), assuming ``history`` itself conforms.

    The check itself is :class:`gcode.codes.Bursty` (the one the schemes use); this wrapper
    validates array shapes. Only the last W−1 rows of ``history`` matter.
    """
    history = np.asarray(history, dtype=bool)
    stragglers = np.asarray(stragglers, dtype=bool)
    if stragglers.ndim != 1:
        raise ValueError(f"stragglers must have shape (n,), got shape {stragglers.shape}")
    n = stragglers.shape[0]
    if history.ndim != 2 or history.shape[1] != n:
        raise ValueError(f"history must have shape (rounds_so_far, {n}), got shape {history.shape}")
    validate_bursty(B, W, lam, n)
    return Bursty(B, W, lam).conforms(history, stragglers)


@dataclass(frozen=True)
class BurstyDelay(DelayModel):
    """Round times whose straggler pattern is (B, W, λ)-bursty by construction.

    Pattern invariants (for every seed):
    - every prefix passes ``bursty_conforms``, so every window of W rounds has at most λ
      distinct stragglers;
    - each burst is a run of consecutive rounds of length 1..B, and two bursts of one worker are
      at least W rounds apart, so a window sees at most one run per worker;
    - every round has at least one non-straggler.
    Times: a non-straggler takes base·(1+jitter·U), a straggler base·slowdown·(1+jitter·U),
    U ~ U(0,1). Since slowdown > 2·(1+jitter), ``detect_stragglers(times, mu=1)`` returns the
    pattern exactly.
    """

    B: int
    W: int
    lam: int
    base: float = 1.0
    slowdown: float = 3.0
    straggle_prob: float = 0.3
    jitter: float = 0.05

    def __post_init__(self) -> None:
        validate_bursty(self.B, self.W, self.lam)
        require_positive("base", self.base)
        require_nonnegative("jitter", self.jitter)
        require_probability("straggle_prob", self.straggle_prob)
        if require_positive("slowdown", self.slowdown) <= 2 * (1 + self.jitter):
            raise ValueError(
                f"slowdown must exceed 2*(1+jitter) = {2 * (1 + self.jitter):g} so that mu=1 "
                f"detection recovers the pattern, got slowdown={self.slowdown}"
            )

    def pattern(self, rounds: int, n: int, seed: int | None = None) -> np.ndarray:
        """Straggler mask (rounds, n), bool; the same one ``sample`` with this seed is built on."""
        return self._pattern(*check_shape(rounds, n), np.random.default_rng(seed))

    def _pattern(self, rounds: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """Per round: running bursts continue; then each worker whose last burst ended at least
        W rounds ago tries, with probability straggle_prob and in random order, to start one.
        A start is accepted only if ``bursty_conforms`` holds and a non-straggler remains; the
        burst then draws its length from 1..B and runs to it."""
        validate_bursty(self.B, self.W, self.lam, n)
        mask = np.zeros((rounds, n), dtype=bool)
        left = np.zeros(n, dtype=np.int64)  # rounds a running burst has after the current one
        last = np.full(n, -self.W, dtype=np.int64)  # last straggling round of each worker
        for r in range(rounds):
            history = mask[max(0, r - self.W + 1):r]
            now = mask[r]
            # A continuation conforms: the worker is already among the window's stragglers and
            # its burst, at most B long, started at least W rounds after its previous one.
            now[left > 0] = True
            left[now] -= 1
            wants = (r - last >= self.W) & (rng.random(n) < self.straggle_prob)
            for i in rng.permutation(np.flatnonzero(wants)):
                if np.count_nonzero(now) + 1 >= n:
                    break
                now[i] = True
                if not bursty_conforms(history, now, self.B, self.W, self.lam):
                    # Only λ can reject a start, so every later start would fail as well.
                    now[i] = False
                    break
                left[i] = rng.integers(self.B)
            last[now] = r
        return mask

    def _sample(self, rounds: int, n: int, rng: np.random.Generator) -> np.ndarray:
        mask = self._pattern(rounds, n, rng)
        factor = np.where(mask, self.slowdown, 1.0)
        return self.base * factor * (1.0 + self.jitter * rng.random((rounds, n)))
