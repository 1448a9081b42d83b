"""Every candidate of a :class:`~gcode.sim.candidates.CandidateGrid`, advanced one round at a time.

:class:`CandidateReplay` is the counterfactual engine of the auto scheme and of the hindsight
search of ``gcode bench auto``: given one round's base times (what each worker would take at the
trace's load; +inf for a worker the live run cut off), it returns the round's duration under
every candidate, as the state-machine simulator would give it with that candidate's scheme and
policy (``tests/sim/test_replay.py`` holds the two equal).

Per round and candidate with load L the times are a·base + c (:class:`LoadModel`), and
  * an s-per-round scheme (uncoded: s = 0) allows the c slowest missing iff c ≤ s;
  * a (1, W, λ) scheme allows the c slowest iff c ≤ its limit, a minimum of lookups over the
    sets it recorded in the last W−1 rounds (fast_b1.py: with B = 1 the recorded sets are
    disjoint, and each is the h slowest of its round);
so every policy resolves the round from the sorted times and one integer ``limit``:
  * ``paper`` μ: cut at (1+μ)·fastest; k slower than the cut; k ≤ limit ends at the cut,
    otherwise the round waits for the slowest and records no straggler;
  * ``partial`` μ: the same, but a violation waits only until the min(k−1, limit) slowest are
    missing; ``earliest`` ends at the arrival that leaves min(limit, n−1) missing (it never
    counts a wait);
  * ``gap`` g: the first quiet gap (no arrival for g × the latest arrival's time) after which at
    most ``limit`` are missing ends the round at that cut; none: the slowest.
A censored worker (+inf) is a straggler under every candidate's cut. A candidate that would wait
for one gets an infinite duration: its time is unknown, and the caller decides what to assume.

With ``jobs`` the replay is a whole run (the hindsight search): T = 0 candidates stop after
``jobs`` rounds, bursty ones after jobs + T, and tail rounds with no task cost nothing, as in the
simulator (SR-SGC with no repeat due; M-SGC with λ = n once every D1 chunk is in).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from .candidates import POLICY_CODE, B1Block, CandidateGrid
from .fast import _COUNT_MAX_N, TraceView, _arrived
from .fast_b1 import _Repeats
from .load_model import LoadModel

EARLIEST, PARTIAL, PAPER, GAP = (POLICY_CODE[k] for k in ("earliest", "partial", "paper", "gap"))


@dataclass
class RoundResult:
    """One round under every candidate (grid order): duration (inf: it would wait for a censored
    worker), whether the policy fell back, and how many stragglers it recorded."""

    durations: np.ndarray
    fell_back: np.ndarray
    kept: np.ndarray


def resolve(asc: np.ndarray, a: np.ndarray, c: np.ndarray, limit: np.ndarray, policy: np.ndarray,
            value: np.ndarray, end: float | None = None) -> RoundResult:
    """The round under P candidates, from its ascending base times ``asc`` (n,) and per candidate
    the affine load map (a, c), the allowed number of missing workers, policy code and value.
    ``end``: the base time after which the cut-off workers (+inf) are known to finish; a gap
    that would need them to stay away longer is unknown (inf)."""
    n = len(asc)
    mu = np.where((policy == PARTIAL) | (policy == PAPER), value, 0.0)
    fastest, slowest = asc[0] * a + c, asc[-1] * a + c
    cut = fastest * (1 + mu)
    if n <= _COUNT_MAX_N:  # few workers: compare every time (as _arrived does, one at a time)
        k = (asc[None, :] * a[:, None] + c[:, None] > cut[:, None]).sum(axis=1)
    else:
        k = n - _arrived(asc, a, c, cut, np.searchsorted(asc, (cut - c) / a, side="right"))
    conform = k <= limit
    partial = policy == PARTIAL
    fallback_kept = np.maximum(0, np.minimum(k - 1, limit))
    durations = np.where(conform, np.minimum(cut, slowest), slowest)
    durations = np.where(partial & ~conform, asc[n - fallback_kept - 1] * a + c, durations)
    kept = np.where(conform, k, np.where(partial, fallback_kept, 0))
    fell_back = ~conform
    # earliest: the first arrival after which the missing conform, one worker at a time (ties
    # too, as EarliestPolicy admits them), and never before the first: min(limit, n−1) missing
    earliest = policy == EARLIEST
    early_kept = np.minimum(limit, n - 1)
    kept = np.where(earliest, early_kept, kept)
    durations = np.where(earliest, asc[n - early_kept - 1] * a + c, durations)
    fell_back &= ~earliest
    gap = np.flatnonzero(policy == GAP)
    if len(gap) and n > 1:
        times = asc[None, :] * a[gap, None] + c[gap, None]
        cuts = times[:, :-1] * (1 + value[gap, None])
        gaps = times[:, 1:] > cuts  # position j: a quiet gap leaving the n−j−1 slowest missing
        valid = gaps & (np.arange(n - 1)[None, :] >= n - 1 - limit[gap, None])
        has, first = valid.any(axis=1), np.argmax(valid, axis=1)
        rows = np.arange(len(gap))
        ends_at = np.where(has, cuts[rows, first], times[:, -1])
        if end is not None:  # the quiet gap runs past what is known of the cut-off workers
            after = times[rows, np.minimum(first + 1, n - 1)]
            ends_at[has & ~np.isfinite(after) & (ends_at > end * a[gap] + c[gap])] = np.inf
        durations[gap] = ends_at
        kept[gap] = np.where(has, n - 1 - first, 0)
        fell_back[gap] = gaps.any(axis=1) & (~has | (np.argmax(gaps, axis=1) < first))
    elif len(gap):
        durations[gap], kept[gap], fell_back[gap] = slowest[gap], 0, False
    return RoundResult(durations, fell_back, kept)


class _B1State:
    """One (1, W, λ) block's history: the sizes of its recorded sets over the last W−1 rounds,
    SR-SGC's repeats, and (whole runs) M-SGC λ = n's D1 arrivals of the last job."""

    def __init__(self, block: B1Block, n: int):
        self.block = block
        self.counted = np.zeros((len(block.lams), block.W - 1), dtype=np.int64)  # oldest first
        self.repeats = (_Repeats(block.srsgc_s, SimpleNamespace(n=n)) if block.srsgc_s is not None
                        else None)
        self.d1_only = block.lams >= n if block.scheme == "msgc" else None
        self.d1_arrivals = np.zeros((len(block.lams), n), dtype=np.int64)

    @property
    def delay(self) -> int:
        return self.block.W - 1 if self.block.scheme == "msgc" else 1

    def limit(self, view: TraceView, r: int) -> np.ndarray:
        """How many of round r's slowest the model allows missing (r: the view's last row)."""
        W = self.block.W
        limit = self.block.lams - self.counted.sum(axis=1)
        for back in range(1, min(W - 1, r) + 1):
            h = self.counted[:, W - 1 - back]
            limit = np.minimum(limit, view.first_overlap(r - back, r)[h])
        return limit

    def idle(self, r: int, in_tail: bool) -> np.ndarray:
        """Settings with no task this round (a tail round of a whole run)."""
        idle = np.zeros(len(self.block.lams), dtype=bool)
        if not in_tail:
            return idle
        if self.repeats is not None:
            return self.repeats.missed - self.repeats.s <= 0
        return self.d1_only & (self.d1_arrivals >= self.block.W - 1).all(axis=1)

    def record(self, view: TraceView, r: int, kept: np.ndarray, tail_from: int | None,
               absolute: int) -> None:
        counted = kept
        if self.repeats is not None:
            self.repeats.view = view
            exempt = self.repeats.step(r, kept)
            counted = np.where(exempt, 0, kept)
        elif tail_from is not None and absolute >= tail_from - 1:
            self.d1_arrivals += view.slow_rank[r][None, :] >= kept[:, None]
        self.counted[:, :-1] = self.counted[:, 1:]
        if self.counted.shape[1]:
            self.counted[:, -1] = counted


class CandidateReplay:
    """Runs every candidate of ``grid`` forward, one round per :meth:`step`.

    ``jobs``: replay a whole run of that many jobs (tails, and each candidate's end); None: an
    endless run with a job every round (the online tuner)."""

    def __init__(self, grid: CandidateGrid, loads: LoadModel, jobs: int | None = None):
        self.grid, self.n, self.jobs = grid, grid.n, jobs
        self.blocks = [_B1State(block, grid.n) for block in grid.b1_blocks]
        self.keep = max([2] + [block.W for block in grid.b1_blocks])
        self.rows: list[np.ndarray] = []
        self.orders: list[np.ndarray] = []
        self.overlaps: dict = {}
        self.round = 0
        self.set_load_model(loads)

    def set_load_model(self, loads: LoadModel) -> None:
        self.loads = loads
        blocks = [self.grid.s_block, *self.grid.b1_blocks]
        pairs = [loads.affine(block.loads, self.n) for block in blocks]
        self.a = np.concatenate([a for a, _ in pairs])
        self.c = np.concatenate([c for _, c in pairs])
        self.policy = np.concatenate([block.policy for block in blocks])
        self.value = np.concatenate([block.value for block in blocks])
        sizes = [len(block.loads) for block in blocks]
        self.bounds = np.cumsum([0] + sizes)  # block i is [bounds[i], bounds[i+1])

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Every candidate's (scale, offset) of the load model, in grid order."""
        return self.a, self.c

    def peek(self, base: np.ndarray, end: float | None = None) -> RoundResult:
        """Every candidate on another version of the round last stepped, with the same history
        and model limits; no state changes (a what-if)."""
        asc = np.sort(np.asarray(base, dtype=np.float64))
        return resolve(asc, self.a, self.c, self._limit, self.policy, self.value, end)

    def s_block(self, base: np.ndarray, end: float | None = None) -> RoundResult:
        """The s-per-round candidates alone (the grid's first block; they keep no history) on a
        round of base times."""
        asc, s = np.sort(np.asarray(base, dtype=np.float64)), self.bounds[1]
        return resolve(asc, self.a[:s], self.c[:s], self.grid.s_block.s, self.policy[:s],
                       self.value[:s], end)

    def step(self, base: np.ndarray, end: float | None = None) -> RoundResult:
        """Advance every candidate through one round of base times (n,), +inf for a worker cut
        off, known only to finish after base time ``end``."""
        base = np.asarray(base, dtype=np.float64)
        r_abs = self.round
        self.rows.append(base)
        self.orders.append(np.argsort(base, kind="stable"))
        if len(self.rows) > self.keep:
            self.rows.pop(0)
            self.orders.pop(0)
        first = r_abs - len(self.rows) + 1
        self.overlaps = {key: v for key, v in self.overlaps.items() if key[0] >= first}
        view = TraceView(np.array(self.rows), 0.0, np.array(self.orders), self.overlaps, first)
        r = len(self.rows) - 1
        idle = np.zeros(len(self.a), dtype=bool)
        if self.jobs is not None and r_abs >= self.jobs:  # T = 0 candidates have finished
            idle[:self.bounds[1]] = True
        limits = [self.grid.s_block.s]
        for i, state in enumerate(self.blocks):
            block_idle = state.idle(r_abs, self.jobs is not None and r_abs >= self.jobs)
            if self.jobs is not None and r_abs >= self.jobs + state.delay:
                block_idle[:] = True
            idle[self.bounds[i + 1]:self.bounds[i + 2]] = block_idle
            limits.append(state.limit(view, r))
        self._limit = np.where(idle, self.n, np.concatenate(limits))
        out = resolve(view.ascending[r], self.a, self.c, self._limit, self.policy, self.value, end)
        out = RoundResult(np.where(idle, 0.0, out.durations), out.fell_back & ~idle,
                          np.where(idle, 0, out.kept))
        for i, state in enumerate(self.blocks):
            state.record(view, r, out.kept[self.bounds[i + 1]:self.bounds[i + 2]], self.jobs, r_abs)
        self.round += 1
        return out


def whole_runs(grid: CandidateGrid, trace: np.ndarray, jobs: int, loads: LoadModel) -> dict:
    """Runtime and waits of every candidate as a fixed choice over a whole run of ``jobs`` jobs
    on ``trace`` (rounds × n base times): the hindsight reference."""
    trace = np.asarray(trace, dtype=np.float64)
    delay = max(c.delay for c in grid.candidates)
    rounds = min(trace.shape[0], jobs + delay)
    replay = CandidateReplay(grid, loads, jobs)
    total = np.zeros(len(grid))
    waits = np.zeros(len(grid), dtype=np.int64)
    for r in range(rounds):
        out = replay.step(trace[r, :grid.n])
        total += out.durations
        waits += out.fell_back
    feasible = np.array([jobs + c.delay <= trace.shape[0] for c in grid.candidates])
    return {"runtime_s": np.where(feasible, total, np.inf), "waits": waits}
