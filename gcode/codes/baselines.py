"""Single-round schemes (T = 0): uncoded, ignore-stragglers, and gradient coding (GC)."""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property

import numpy as np

from .base import CodeBacked, Scheme
from .gc import DEFAULT_GC_CODE, make_gc_code
from .gradient_code import GradientCode
from .models import SPerRound
from .plan import Decoding, TaskBlock


class _OneRoundScheme(Scheme):
    """Job t runs in round t only; each worker computes one coded task per round.

    State: per pending job, the mask of workers whose result arrived."""

    def __init__(self, n: int, jobs: int | None):
        super().__init__(n, jobs)
        self._arrived: dict[int, np.ndarray] = {}
        self._everyone = np.ones(self.n, dtype=bool)
        self._everyone.flags.writeable = False

    @property
    def delay(self) -> int:
        return 0

    @abstractmethod
    def _block(self, job: int) -> TaskBlock:
        """Every worker's task for ``job``."""

    plans_from_own_arrivals = True  # round r+1 runs job r+1 only, the same tasks for anyone

    def _plan(self, r):
        return [self._block(r)] if self.job_exists(r) else []

    def _fork_state(self, clone):
        clone._arrived = {t: mask.copy() for t, mask in self._arrived.items()}

    def _accept(self, block, r, workers):
        self._arrived.setdefault(block.job, np.zeros(self.n, dtype=bool))[workers] = True

    def _forget(self, t):
        self._arrived.pop(t, None)

    def _finished(self, t: int) -> np.ndarray:
        """Mask of the workers whose result for job t arrived."""
        return self._arrived.get(t, np.zeros(self.n, dtype=bool))


class Uncoded(_OneRoundScheme):
    """Worker i computes chunk i (1/n of the data); the round waits for every worker."""

    name = "uncoded"

    @property
    def load(self):
        return 1.0 / self.n

    @property
    def chunk_fractions(self):
        return np.full(self.n, 1.0 / self.n)

    @property
    def model(self):
        return SPerRound(0)

    @cached_property
    def _own_chunk(self) -> np.ndarray:
        chunk = np.arange(self.n)  # worker i computes chunk i
        chunk.flags.writeable = False
        return chunk

    def _block(self, job):
        return TaskBlock(job, 0, self._everyone, chunk=self._own_chunk)

    def _decodable(self, t):
        return bool(self._finished(t).all())

    def _decode(self, t) -> Decoding:
        return Decoding(np.flatnonzero(self._finished(t)), t, 0, 1.0)


class IgnoreStragglers(Uncoded):
    """APPROXIMATE: use whichever ≥ n−s workers finished, rescaled by n/|finished|.

    The result is a biased estimate of the gradient, not the exact sum.
    """

    name = "ignore"
    exact = False

    def __init__(self, n: int, s: int, jobs: int | None = None):
        super().__init__(n, jobs)
        if not isinstance(s, (int, np.integer)) or not 0 <= s < n:
            raise ValueError(f"s must satisfy 0 <= s < n, got s={s!r}, n={n}")
        self.s = int(s)

    @property
    def params(self):
        return {"s": self.s}

    @property
    def model(self):
        return SPerRound(self.s)

    def _decodable(self, t):
        return int(np.count_nonzero(self._finished(t))) >= max(1, self.n - self.s)

    def _decode(self, t) -> Decoding:
        finished = np.flatnonzero(self._finished(t))
        return Decoding(finished, t, 0, self.n / len(finished))


class GradientCoding(CodeBacked, _OneRoundScheme):
    """GC: worker i sends its coded combination; any n−s finished workers decode the job."""

    name = "gc"

    def __init__(self, n: int, s: int, jobs: int | None = None, gc_code: str = DEFAULT_GC_CODE,
                 code: GradientCode | None = None):
        super().__init__(n, jobs)
        self.code = code if code is not None else make_gc_code(gc_code, self.n, s)
        self.s = int(s)

    @property
    def params(self):
        return {"s": self.s, "gc_code": self.code.kind}

    @property
    def model(self):
        return SPerRound(self.s)

    def _block(self, job):
        return TaskBlock(job, 0, self._everyone, code=self.code)

    def _decodable(self, t):
        return self.code.decodable(self._finished(t))

    def _decodes_in_budget(self, r, arrived):
        return not self.job_exists(r) or self.code.decodable(self._finished(r) | arrived)

    def _decode(self, t) -> Decoding:
        return self._coded(self.code, self._finished(t), t, 0)
