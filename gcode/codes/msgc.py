"""M-SGC, multiplexed sequential gradient coding (Krishnan et al., ICLR 2023); T = W−2+B.

Each round every worker runs W−1+B equal-cost mini-task slots; job t occupies slot m = r−t of
round r. Job t's data is
  * D1: n·(W−1) disjoint chunks of size x, W−1 owned by each worker (no redundancy), and
  * D2: B groups of size y, each coded with an (n, λ) gradient code.
Equal slot cost gives x = code.load · y (= (λ+1)·y/n for the cyclic code) and
n(W−1)x + By = 1. With λ = n there is no D2 and x = 1/(n(W−1)).

Chunk numbering of one job: D1 chunk c of worker i is ``i·(W−1) + c``; part j of D2 group b is
``n·(W−1) + b·P + j`` where P is the code's number of parts.
"""

from __future__ import annotations

import numpy as np

from .base import Decoding, MiniTask, ResultKey, Scheme, coded_task
from .gc import GradientCode, make_gc_code
from .models import Bursty, validate_bursty


class _JobState:
    """What arrived for one job: D1 chunk results and per-group D2 results."""

    def __init__(self, n: int, d1_per_worker: int, groups: int):
        self.d1: list[dict[int, ResultKey]] = [{} for _ in range(n)]
        self.d1_per_worker = d1_per_worker
        self.d2: list[dict[int, ResultKey]] = [{} for _ in range(groups)]

    def missing_d1(self, worker: int) -> list[int]:
        return [c for c in range(self.d1_per_worker) if c not in self.d1[worker]]


class MultiplexedSGC(Scheme):
    """Adaptive assignment, decided at the start of round r from arrivals up to r−1. For job t in
    slot m = r−t: m < W−1 computes the worker's next undelivered D1 chunk; m = W−1+b computes
    D2 group b's coded task when all the worker's D1 chunks arrived, else redoes a missing one.

    Invariant: under a conforming pattern, by the end of round t+T every D1 chunk arrived and
    every D2 group has enough coded results (≥ n−λ) to decode.
    """

    name = "msgc"

    def __init__(self, n: int, B: int, W: int, lam: int, jobs: int | None = None,
                 gc_code: str = "cyclic", code_s: int | None = None):
        super().__init__(n, jobs)
        validate_bursty(B, W, lam, self.n)
        self.B, self.W, self.lam = int(B), int(W), int(lam)
        # ``code_s`` overrides the D2 code's redundancy λ; only tests use it (tightness).
        code_s = self.lam if code_s is None else int(code_s)
        self.code: GradientCode | None = None if code_s >= self.n else make_gc_code(gc_code, self.n, code_s)
        self.gc_code = gc_code
        d1_chunks = self.n * (self.W - 1)
        if self.code is None:
            self.y = 0.0
            self.x = 1.0 / d1_chunks
        else:
            self.y = 1.0 / (d1_chunks * self.code.load + self.B)
            self.x = self.code.load * self.y
        self._model = Bursty(self.B, self.W, self.lam)
        self._jobs: dict[int, _JobState] = {}

    @property
    def params(self):
        return {"B": self.B, "W": self.W, "lam": self.lam, "gc_code": self.gc_code}

    @property
    def delay(self):
        return self.W - 2 + self.B

    @property
    def slots(self) -> int:
        return self.W - 1 + self.B

    @property
    def load(self):
        return self.slots * self.x

    @property
    def chunk_fractions(self):
        d1 = np.full(self.n * (self.W - 1), self.x)
        if self.code is None:
            return d1
        d2 = np.tile(self.code.part_fractions * self.y, self.B)
        return np.concatenate([d1, d2])

    @property
    def chunk_groups(self):
        d2 = (self.code.num_parts,) * self.B if self.code is not None else ()
        return (self.n * (self.W - 1),) + d2

    @property
    def model(self):
        return self._model

    @property
    def message_dtype(self):
        return self.code.message_dtype if self.code is not None else np.dtype(np.float32)

    def _state(self, t: int) -> _JobState:
        if t not in self._jobs:
            self._jobs[t] = _JobState(self.n, self.W - 1, self.B if self.code else 0)
        return self._jobs[t]

    def _d1_task(self, worker: int, job: int, slot: int, chunk: int) -> MiniTask:
        return MiniTask(job, slot, (worker * (self.W - 1) + chunk,), (1.0,))

    def _plan(self, r):
        plan: list[list[MiniTask]] = [[] for _ in range(self.n)]
        for slot in range(self.slots):
            t = r - slot
            if not self.job_exists(t) or t in self._decoded:
                continue
            state = self._state(t)
            for i in range(self.n):
                missing = state.missing_d1(i)
                if missing:
                    plan[i].append(self._d1_task(i, t, slot, missing[0]))
                elif slot >= self.W - 1 and self.code is not None:
                    group = slot - (self.W - 1)
                    offset = self.n * (self.W - 1) + group * self.code.num_parts
                    plan[i].append(coded_task(self.code, i, t, slot, offset))
        return plan

    def _accept(self, worker, r, task):
        state = self._state(task.job)
        key = ResultKey(worker, r, task.slot)
        first_d2 = self.n * (self.W - 1)
        if task.chunks[0] < first_d2:
            state.d1[worker].setdefault(task.chunks[0] - worker * (self.W - 1), key)
        else:
            group = (task.chunks[0] - first_d2) // self.code.num_parts
            state.d2[group].setdefault(worker, key)

    def _decodable(self, t):
        state = self._jobs.get(t)
        if state is None or any(state.missing_d1(i) for i in range(self.n)):
            return False
        return all(self.code.can_decode(frozenset(group)) for group in state.d2)

    def _decode(self, t) -> Decoding:
        state = self._jobs[t]
        decoding = [(key, 1.0) for worker_chunks in state.d1 for key in worker_chunks.values()]
        for group in state.d2:
            for w, c in sorted(self.code.decode_coefficients(frozenset(group)).items()):
                decoding.append((group[w], c))
        return decoding

    def _forget(self, t):
        self._jobs.pop(t, None)
