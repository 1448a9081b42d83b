"""Single-round schemes (T = 0): uncoded, ignore-stragglers, and gradient coding (GC)."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from .base import CodeBacked, Decoding, MiniTask, ResultKey, Scheme, coded_task
from .gc import GradientCode, make_gc_code
from .models import SPerRound


class _OneRoundScheme(Scheme):
    """Job t runs in round t only; each worker computes one coded task per round."""

    def __init__(self, n: int, jobs: int | None):
        super().__init__(n, jobs)
        self._arrived: dict[int, set[int]] = {}

    @property
    def delay(self) -> int:
        return 0

    @abstractmethod
    def _worker_task(self, worker: int, job: int) -> MiniTask:
        """Worker's single task for ``job``."""

    def _plan(self, r):
        if not self.job_exists(r):
            return [[] for _ in range(self.n)]
        return [[self._worker_task(i, r)] for i in range(self.n)]

    def _accept(self, worker, r, task):
        self._arrived.setdefault(task.job, set()).add(worker)

    def _forget(self, t):
        self._arrived.pop(t, None)

    def _finished(self, t: int) -> frozenset[int]:
        return frozenset(self._arrived.get(t, ()))


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

    def _worker_task(self, worker, job):
        return MiniTask(job, 0, (worker,), (1.0,))

    def _decodable(self, t):
        return len(self._finished(t)) == self.n

    def _decode(self, t) -> Decoding:
        return [(ResultKey(w, t, 0), 1.0) for w in sorted(self._finished(t))]


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
        return len(self._finished(t)) >= max(1, self.n - self.s)

    def _decode(self, t) -> Decoding:
        finished = sorted(self._finished(t))
        scale = self.n / len(finished)
        return [(ResultKey(w, t, 0), scale) for w in finished]


class GradientCoding(CodeBacked, _OneRoundScheme):
    """GC: worker i sends its coded combination; any n−s finished workers decode the job."""

    name = "gc"

    def __init__(self, n: int, s: int, jobs: int | None = None, gc_code: str = "cyclic",
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

    def _worker_task(self, worker, job):
        return coded_task(self.code, worker, job)

    def _decodable(self, t):
        return self.code.can_decode(self._finished(t))

    def _decode(self, t) -> Decoding:
        coefficients = self.code.decode_coefficients(self._finished(t))
        return [(ResultKey(w, t, 0), c) for w, c in sorted(coefficients.items())]
