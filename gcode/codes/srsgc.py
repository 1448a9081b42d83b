"""SR-SGC, selective-repeat sequential gradient coding (Krishnan et al., ICLR 2023); T = B."""

from __future__ import annotations

import math

import numpy as np

from .base import CodeBacked, Decoding, ResultKey, Scheme, coded_task
from .gc import GradientCode, make_gc_code
from .models import Bursty, validate_bursty


def srsgc_s(B: int, W: int, lam: int) -> int:
    """The GC redundancy s that makes SR-SGC tolerate every (B, W, λ)-bursty pattern.

    s = ⌈Bλ/(W−1+B)⌉ when B divides W−1. Otherwise that formula is unsafe and W is replaced by
    W′ = B·⌊(W−1)/B⌋ + 1, giving s = ⌈λ/(⌊(W−1)/B⌋ + 1)⌉.
    """
    return math.ceil(lam / ((W - 1) // B + 1))


class SelectiveRepeatSGC(CodeBacked, Scheme):
    """Every worker computes its GC task for job r in round r, except that when job t = r−B still
    misses v > s results, v−s of its missing workers redo their job-t task instead.

    A job decodes once it has n−s results (the GC code's guarantee), so v ≤ s after round t is
    exactly "job t decoded in round t", whatever the code.

    Extended model (the authors' replay rule): when every worker ran job r in round r and at
    most s straggled, job r decodes within round r and those stragglers touch no other job, so
    they are not counted in later rounds' (B, W, λ) checks. The scheme then evolves exactly as
    after a straggler-free round, so the original guarantee carries over.

    Invariant: under a conforming pattern job t has ≥ n−s results by the end of round t+B.
    """

    name = "srsgc"

    def __init__(self, n: int, B: int, W: int, lam: int, jobs: int | None = None,
                 gc_code: str = "cyclic", s: int | None = None):
        super().__init__(n, jobs)
        validate_bursty(B, W, lam, self.n)
        self.B, self.W, self.lam = int(B), int(W), int(lam)
        # ``s`` overrides the safe redundancy; only tests use it, to show the formula is tight.
        self.s = srsgc_s(self.B, self.W, self.lam) if s is None else int(s)
        if self.s >= self.n:
            raise ValueError(f"(B, W, lam)=({B}, {W}, {lam}) needs s={self.s} >= n={n}; lower lam")
        self.code: GradientCode = make_gc_code(gc_code, self.n, self.s)
        self._model = Bursty(self.B, self.W, self.lam)
        self._arrived: dict[int, dict[int, ResultKey]] = {}

    @property
    def params(self):
        return {"B": self.B, "W": self.W, "lam": self.lam, "s": self.s, "gc_code": self.code.kind}

    @property
    def delay(self):
        return self.B

    @property
    def model(self):
        return self._model

    def _plan(self, r):
        job_of_worker = np.full(self.n, r if self.job_exists(r) else -1)
        old = r - self.B
        if self.job_exists(old) and old not in self._decoded:
            missing = [i for i in range(self.n) if i not in self._arrived.get(old, {})]
            if len(missing) > self.s:
                job_of_worker[missing[: len(missing) - self.s]] = old
        return [[coded_task(self.code, i, int(j))] if j >= 0 else [] for i, j in enumerate(job_of_worker)]

    def _accept(self, worker, r, task):
        self._arrived.setdefault(task.job, {}).setdefault(worker, ResultKey(worker, r, task.slot))

    def _finished(self, t):
        return frozenset(self._arrived.get(t, {}))

    def _counted_stragglers(self, r, stragglers):
        own_job_only = all(len(tasks) == 1 and tasks[0].job == r for tasks in self.plan(r))
        if own_job_only and int(np.count_nonzero(stragglers)) <= self.s:
            return np.zeros_like(stragglers)
        return stragglers

    def _decodable(self, t):
        finished = self._finished(t)
        return len(finished) >= self.n - self.s and self.code.can_decode(finished)

    def _decode(self, t) -> Decoding:
        keys = self._arrived[t]
        coefficients = self.code.decode_coefficients(self._finished(t))
        return [(keys[w], c) for w, c in sorted(coefficients.items())]

    def _forget(self, t):
        self._arrived.pop(t, None)
