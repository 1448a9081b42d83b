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

import copy

import numpy as np

from .base import Scheme
from .gc import DEFAULT_GC_CODE, make_gc_code
from .gradient_code import GradientCode
from .models import Bursty, validate_bursty
from .plan import Decoding, TaskBlock


class _JobState:
    """What arrived for one job: the (round, slot) of the first arrival of each D1 chunk
    (``d1_round``/``d1_slot``, shape (n, W−1), chunk c of worker i at [i, c]) and of each
    worker's coded result per D2 group (``d2_round``/``d2_slot``, shape (B, n)); round −1:
    not yet."""

    def __init__(self, n: int, d1_per_worker: int, groups: int):
        self.d1_round = np.full((n, d1_per_worker), -1, dtype=np.int64)
        self.d1_slot = np.zeros((n, d1_per_worker), dtype=np.int64)
        self.d2_round = np.full((groups, n), -1, dtype=np.int64)
        self.d2_slot = np.zeros((groups, n), dtype=np.int64)

    def next_d1(self) -> tuple[np.ndarray, np.ndarray]:
        """(missing, chunk): whether each worker still misses a D1 chunk, and its lowest one."""
        absent = self.d1_round < 0
        return absent.any(axis=1), np.argmax(absent, axis=1)


class MultiplexedSGC(Scheme):
    """Adaptive assignment, decided at the start of round r from arrivals up to r−1. For job t in
    slot m = r−t: m < W−1 computes the worker's next undelivered D1 chunk; m = W−1+b computes
    D2 group b's coded task when all the worker's D1 chunks arrived, else redoes a missing one.

    Invariant: under a conforming pattern, by the end of round t+T every D1 chunk arrived and
    every D2 group has enough coded results (≥ n−λ) to decode.
    """

    name = "msgc"
    plans_from_own_arrivals = True  # a worker's next tasks follow its own D1 chunks (_plan)

    def __init__(self, n: int, B: int, W: int, lam: int, jobs: int | None = None,
                 gc_code: str = DEFAULT_GC_CODE, code_s: int | None = None):
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
    def max_tasks_per_round(self) -> int:
        return self.slots

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
        d2 = self.code.part_groups * self.B if self.code is not None else ()
        return (self.n * (self.W - 1),) + d2

    @property
    def model(self):
        return self._model

    @property
    def codes(self):
        return () if self.code is None else (self.code,)

    def _state(self, t: int) -> _JobState:
        if t not in self._jobs:
            self._jobs[t] = _JobState(self.n, self.W - 1, self.B if self.code else 0)
        return self._jobs[t]

    def _plan(self, r):
        blocks = []
        d1_base = np.arange(self.n) * (self.W - 1)
        for slot in range(self.slots):
            t = r - slot
            if not self.job_exists(t) or t in self._decoded:
                continue
            missing, chunk = self._state(t).next_d1()
            blocks.append(TaskBlock(t, slot, missing, chunk=d1_base + chunk))
            if slot >= self.W - 1 and self.code is not None:
                group = slot - (self.W - 1)
                offset = self.n * (self.W - 1) + group * self.code.num_parts
                blocks.append(TaskBlock(t, slot, ~missing, code=self.code, chunk_offset=offset))
        return blocks

    def _fork_state(self, clone):
        clone._jobs = {t: copy.deepcopy(state) for t, state in self._jobs.items()}

    def _accept(self, block, r, workers):
        state = self._state(block.job)
        if block.code is None:  # D1 chunks
            chunk = block.chunk[workers] - workers * (self.W - 1)
            new = state.d1_round[workers, chunk] < 0
            workers, chunk = workers[new], chunk[new]
            state.d1_round[workers, chunk] = r
            state.d1_slot[workers, chunk] = block.slot
        else:
            group = (block.chunk_offset - self.n * (self.W - 1)) // self.code.num_parts
            workers = workers[state.d2_round[group, workers] < 0]
            state.d2_round[group, workers] = r
            state.d2_slot[group, workers] = block.slot

    def _decodable(self, t):
        state = self._jobs.get(t)
        if state is None or (state.d1_round < 0).any():
            return False
        return all(self.code.decodable(arrived) for arrived in state.d2_round >= 0)

    def _decodes_in_budget(self, r, arrived):
        """A D2 group gets coded results only in its own round: its set must decode then."""
        for block in self.plan(r).blocks:
            if block.code is not None:
                group = (block.chunk_offset - self.n * (self.W - 1)) // self.code.num_parts
                done = self._state(block.job).d2_round[group] >= 0
                if not self.code.decodable(done | (arrived & block.workers)):
                    return False
        return True

    def _decode(self, t) -> Decoding:
        state = self._jobs[t]
        parts = [Decoding(np.repeat(np.arange(self.n), self.W - 1), state.d1_round.ravel(),
                          state.d1_slot.ravel(), 1.0)]
        for group in range(state.d2_round.shape[0]):
            parts.append(self._coded(self.code, state.d2_round[group] >= 0,
                                     state.d2_round[group], state.d2_slot[group]))
        return Decoding.concat(parts)

    def _forget(self, t):
        self._jobs.pop(t, None)
