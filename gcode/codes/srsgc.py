"""SR-SGC, selective-repeat sequential gradient coding (Krishnan et al., ICLR 2023); T = B."""

from __future__ import annotations

import math

import numpy as np

from .base import CodeBacked, Scheme
from .gc import DEFAULT_GC_CODE, make_gc_code
from .gradient_code import GradientCode
from .models import Bursty, validate_bursty
from .plan import Decoding, TaskBlock


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
    exactly "job t decoded in round t", whatever the code. With an uncertified code a set may
    miss the decode error budget; then the fewest of the missing workers (at least v−s) whose
    results make the job decode within it repeat, so waiting for every worker of round t+B
    always decodes job t, and round t+B's stragglers conform only if job t still decodes.

    Extended model (the authors' replay rule): when every worker ran job r in round r and at
    most s straggled, job r decodes within round r and those stragglers touch no other job, so
    they are not counted in later rounds' (B, W, λ) checks. The scheme then evolves exactly as
    after a straggler-free round, so the original guarantee carries over.

    Invariant: under a conforming pattern job t has ≥ n−s results by the end of round t+B.
    """

    name = "srsgc"

    def __init__(self, n: int, B: int, W: int, lam: int, jobs: int | None = None,
                 gc_code: str = DEFAULT_GC_CODE, s: int | None = None):
        super().__init__(n, jobs)
        validate_bursty(B, W, lam, self.n)
        self.B, self.W, self.lam = int(B), int(W), int(lam)
        # ``s`` overrides the safe redundancy; only tests use it, to show the formula is tight.
        self.s = srsgc_s(self.B, self.W, self.lam) if s is None else int(s)
        if self.s >= self.n:
            raise ValueError(f"(B, W, lam)=({B}, {W}, {lam}) needs s={self.s} >= n={n}; lower lam")
        self.code: GradientCode = make_gc_code(gc_code, self.n, self.s)
        self._model = Bursty(self.B, self.W, self.lam)
        self._arrived: dict[int, np.ndarray] = {}  # job -> first arrival round per worker

    @property
    def params(self):
        return {"B": self.B, "W": self.W, "lam": self.lam, "s": self.s, "gc_code": self.code.kind}

    @property
    def delay(self):
        return self.B

    @property
    def model(self):
        return self._model

    def _first_round(self, t: int) -> np.ndarray:
        """(n,) the round in which each worker's result for job t first arrived; −1: not yet."""
        if t not in self._arrived:
            self._arrived[t] = np.full(self.n, -1, dtype=np.int64)
        return self._arrived[t]

    def _plan(self, r):
        repeat = np.zeros(self.n, dtype=bool)
        old = r - self.B
        if self.job_exists(old) and old not in self._decoded:
            repeat[self._repeaters(old)] = True
        blocks = [TaskBlock(old, 0, repeat, code=self.code)]
        if self.job_exists(r):
            blocks.append(TaskBlock(r, 0, ~repeat, code=self.code))
        return blocks

    def _repeaters(self, t: int) -> np.ndarray:
        """The workers that redo job t in round t+B: its v−s lowest missing workers, or more
        with an uncertified code until their results decode job t within the budget."""
        finished = self._finished(t)
        missing = np.flatnonzero(~finished)
        count = max(0, len(missing) - self.s)
        if not self.code.certified:
            while count < len(missing):
                arrived = finished.copy()
                arrived[missing[:count]] = True
                if self.code.decodable(arrived):
                    break
                count += 1
            self.extra_repeats += count - max(0, len(missing) - self.s)
        return missing[:count]

    def _decodes_in_budget(self, r, arrived):
        t = r - self.B
        if not self.job_exists(t) or t in self._decoded:
            return True
        blocks = [b for b in self.plan(r).blocks if b.job == t]
        repeated = blocks[0].workers & arrived if blocks else np.zeros(self.n, dtype=bool)
        return self.code.decodable(self._finished(t) | repeated)

    def _accept(self, block, r, workers):
        first = self._first_round(block.job)
        workers = workers[first[workers] < 0]
        first[workers] = r

    def _finished(self, t) -> np.ndarray:
        return self._arrived[t] >= 0 if t in self._arrived else np.zeros(self.n, dtype=bool)

    def _counted_stragglers(self, r, stragglers):
        blocks = self.plan(r).blocks
        own_job_only = len(blocks) == 1 and blocks[0].job == r and bool(blocks[0].workers.all())
        if (own_job_only and int(np.count_nonzero(stragglers)) <= self.s
                and (self.code.certified or self.code.decodable(~stragglers))):
            return np.zeros_like(stragglers)
        return stragglers

    def _decodable(self, t):
        finished = self._finished(t)
        return int(np.count_nonzero(finished)) >= self.n - self.s and self.code.decodable(finished)

    def _decode(self, t) -> Decoding:
        return self._coded(self.code, self._finished(t), self._arrived[t], 0)

    def _forget(self, t):
        self._arrived.pop(t, None)
