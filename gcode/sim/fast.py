"""Vectorized runtime of many parameter settings on one trace, under the paper policy.

Under ``PaperPolicy`` a round's duration depends only on whether its straggler set conforms to
the scheme's straggler model, so the tuner needs the model check, not the coded data. This
module evaluates that check for thousands of settings at once:

* For load L the per-worker time is a·t + c (:class:`LoadModel`: c = L·slope for the additive
  model, a = L/L_trace for the proportional one). That keeps the order of workers, so the
  stragglers of a round (time > (1+μ)·fastest) are always its k slowest workers. k is counted
  with the simulator's own floating-point comparison, so the sets equal the simulator's bit for
  bit.
* Straggler sets are bitsets (one uint64 per 64 workers). A (B, W, λ) check is a few ORs and a
  popcount over a ring of W−1 past bitsets, vectorized over every λ that shares (B, W).

``tests/sim/test_sim.py`` checks equality with :func:`gcode.sim.simulate` driving the real schemes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .load_model import LoadModel

#: settings × rounds × workers compared at once when counting stragglers (bounds memory)
_COUNT_BLOCK = 1 << 22
#: up to this many workers stragglers are counted by comparing every time; beyond, by search
_COUNT_MAX_N = 64


@dataclass
class TraceView:
    """Per-round order statistics of one (rounds, n) time matrix; the prefix bitsets are built
    on first use (they cost rounds·n²/64 words)."""

    times: np.ndarray
    mu: float
    #: stable ascending order of each round (rows of argsort), when already known
    order: np.ndarray | None = None
    #: :meth:`first_overlap` results shared between views of overlapping windows, keyed by
    #: round numbers offset by ``first_round`` (the auto tuner's rolling window)
    overlaps: dict | None = None
    first_round: int = 0

    def __post_init__(self):
        self.times = np.asarray(self.times, dtype=np.float64)
        rounds, n = self.times.shape
        self.rounds, self.n = rounds, n
        if self.order is None:
            self.order = np.argsort(self.times, axis=1, kind="stable")
        self.ascending = np.take_along_axis(self.times, self.order, axis=1)
        self.fastest = self.ascending[:, 0]
        self.slowest = self.ascending[:, -1]
        # the reverse of the stable ascending order, so that a prefix of k is exactly what is
        # still missing after the n−k earliest arrivals (ties included)
        self.slowest_first = self.order[:, ::-1]
        #: slow_rank[r, w]: worker w's position in round r's slowest-first order, so the
        #: straggler set "the k slowest" is ``slow_rank[r] < k``
        self.slow_rank = np.empty((rounds, n), dtype=np.int64)
        np.put_along_axis(self.slow_rank, self.slowest_first, np.arange(n)[None, :], axis=1)
        self._prefix: np.ndarray | None = None
        if self.overlaps is None:
            self.overlaps = {}

    @property
    def prefix(self) -> np.ndarray:
        """(rounds, n+1, words) uint64: prefix[r, k] is the bitset of round r's k slowest."""
        if self._prefix is None:
            rounds, n = self.rounds, self.n
            words = (n + 63) // 64
            onehot = np.zeros((n, words), dtype=np.uint64)
            onehot[np.arange(n), np.arange(n) // 64] = np.left_shift(
                np.uint64(1), (np.arange(n) % 64).astype(np.uint64))
            self._prefix = np.zeros((rounds, n + 1, words), dtype=np.uint64)
            self._prefix[:, 1:] = np.bitwise_or.accumulate(onehot[self.slowest_first], axis=1)
        return self._prefix

    def slowest_bitsets(self, r: int, counts: np.ndarray) -> np.ndarray:
        """(len(counts), words) uint64: the bitset of round r's c slowest for each c, in
        O(n + len(counts)·n/64) (no prefix table)."""
        counts = np.asarray(counts, dtype=np.int64)
        order = np.argsort(counts, kind="stable")
        ascending = counts[order]
        table = np.zeros((len(counts), (self.n + 63) // 64), dtype=np.uint64)
        top = self.slowest_first[r, :ascending[-1]] if len(counts) else []
        if len(top):  # the j-th slowest is in every set whose c exceeds j
            first = np.searchsorted(ascending, np.arange(len(top)), side="right")
            np.bitwise_or.at(table, (first, top >> 6),
                             np.left_shift(np.uint64(1), (top & 63).astype(np.uint64)))
            np.bitwise_or.accumulate(table, axis=0, out=table)
        out = np.empty_like(table)
        out[order] = table
        return out

    def first_overlap(self, earlier: int, r: int) -> np.ndarray:
        """(n+1,) int64: entry h is the least slowest-first rank in round r of round
        ``earlier``'s h slowest workers (n for h = 0), so round r's c slowest are disjoint
        from them iff c <= entry h."""
        key = (self.first_round + earlier, self.first_round + r)
        if key not in self.overlaps:
            ranks = self.slow_rank[r][self.slowest_first[earlier]]
            self.overlaps[key] = np.concatenate([[self.n], np.minimum.accumulate(ranks)])
        return self.overlaps[key]

    def round_stats(self, scales: np.ndarray, offsets: np.ndarray, mus: np.ndarray | None = None):
        """For per-setting affine times a·t + c (P,): straggler counts k, cut-off and slowest,
        each (P, R). A worker straggles iff fl(a·t + c) > cut, exactly as the simulator decides.
        ``mus``: a per-setting μ instead of the view's."""
        a = np.asarray(scales, dtype=np.float64)[:, None]
        c = np.asarray(offsets, dtype=np.float64)[:, None]
        mu = self.mu if mus is None else np.asarray(mus, dtype=np.float64)[:, None]
        cut = (self.fastest[None, :] * a + c) * (1 + mu)
        slowest = self.slowest[None, :] * a + c
        k = np.empty(cut.shape, dtype=np.int64)
        if self.n <= _COUNT_MAX_N:  # few workers: compare every time, all rounds at once
            step = max(1, _COUNT_BLOCK // max(1, self.rounds * self.n))
            for lo in range(0, len(a), step):
                block = slice(lo, lo + step)
                times = self.ascending[None, :, :] * a[block, :, None] + c[block, :, None]
                k[block] = (times > cut[block, :, None]).sum(axis=2)
            return k, cut, slowest
        a, c = a[:, 0], c[:, 0]
        for r in range(self.rounds):  # many workers: search per round, then the exact count
            column, limit = self.ascending[r], cut[:, r]
            guess = np.searchsorted(column, (limit - c) / a, side="right")  # arrived by the cut
            k[:, r] = self.n - _arrived(column, a, c, limit, guess)
        return k, cut, slowest


def _arrived(column: np.ndarray, a: np.ndarray, c: np.ndarray, limit: np.ndarray,
             guess: np.ndarray) -> np.ndarray:
    """Per setting, how many of the ascending ``column`` have fl(a·t + c) <= limit (monotone in
    t): ``guess`` corrected by a step or two, or, when ties put it farther off (many workers
    censored at one round end share a time), by bisection."""
    n = len(column)

    def arrived(m):  # whether the m-th earliest (m >= 1) is in by the limit
        return column[np.clip(m - 1, 0, n - 1)] * a + c <= limit

    kept = guess
    for _ in range(2):
        over = (kept > 0) & ~arrived(kept)
        under = (kept < n) & arrived(kept + 1)
        if not (over.any() or under.any()):
            return kept
        kept = kept - over + under
    low, high = np.zeros_like(kept), np.full_like(kept, n)  # the count is in [low, high]
    while np.any(low < high):
        mid = (low + high + 1) // 2
        ok = arrived(mid)
        low, high = np.where(ok, mid, low), np.where(ok, high, mid - 1)
    return low


def s_per_round_runtimes(view: TraceView, s: np.ndarray, loads: np.ndarray,
                         slope: float | LoadModel, rounds: int, partial: bool = False,
                         mus: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Runtime and waits for s-per-round schemes (uncoded: s=0, GC, ignore) over ``rounds``.

    ``slope``: the additive load slope, or a :class:`LoadModel`.
    ``partial``: on a violation wait for the (n−s)-th arrival instead of the slowest worker.
    ``mus``: a per-setting μ instead of the view's.
    """
    s = np.asarray(s)
    scales, offsets = LoadModel.of(slope).affine(loads, view.n)
    k, cut, slowest = view.round_stats(scales, offsets, mus)
    k, cut, slowest = k[:, :rounds], cut[:, :rounds], slowest[:, :rounds]
    conform = k <= s[:, None]
    fallback = slowest
    if partial:
        fallback = view.ascending[:rounds, view.n - s - 1].T * scales[:, None] + offsets[:, None]
    durations = np.where(conform, np.minimum(cut, slowest), fallback)
    return durations.sum(axis=1), (~conform).sum(axis=1)


def bursty_runtimes(view: TraceView, B: int, W: int, lams: np.ndarray, loads: np.ndarray,
                    slope: float | LoadModel, rounds: int, partial: bool = False,
                    srsgc_s: np.ndarray | None = None, jobs: int | None = None,
                    mus: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Runtime and waits for (B, W, λ) settings sharing B and W, vectorized over λ.

    ``partial``: on a violation keep the largest still-missing prefix (the k′ slowest workers)
    that conforms, found by binary search (conformance is monotone under subsets), and end the
    round at the arrival that leaves exactly those k′ missing.
    ``srsgc_s``: the settings are SR-SGC with these GC redundancies. Its repeats are tracked, and
    a round in which every worker ran the round's own job with at most s stragglers is left out
    of later model checks (:class:`gcode.codes.SelectiveRepeatSGC`). Otherwise M-SGC.
    ``jobs``: the run issues this many jobs; a later round in which no worker has a task costs
    nothing (SR-SGC with no repeat due; M-SGC with λ = n once every D1 chunk is in). None: a
    job in every round (a window replay).
    ``mus``: a per-setting μ instead of the view's.
    """
    lams = np.asarray(lams)
    scales, offsets = LoadModel.of(slope).affine(loads, view.n)
    k, cut, slowest = view.round_stats(scales, offsets, mus)
    settings, n = len(lams), view.n
    words = view.prefix.shape[2]
    history = np.zeros((settings, rounds, words), dtype=np.uint64)
    total = np.zeros(settings)
    waits = np.zeros(settings, dtype=np.int64)
    rows = np.arange(settings)
    repeats = _SelectiveRepeats(srsgc_s, B, n) if srsgc_s is not None else None
    d1_only = None if repeats is not None or jobs is None else lams >= n
    d1_arrivals = np.zeros((settings, n), dtype=np.int64)  # M-SGC λ = n: of the last job
    for r in range(rounds):
        lo = max(0, r - W + 1)
        hi = max(0, r - B + 1)
        recent = _union(history, lo, r)
        early = _union(history, lo, hi)

        def conforms(count, r=r, recent=recent, early=early):
            now = view.prefix[r][count]
            seen = now if recent is None else recent | now
            ok = np.bitwise_count(seen).sum(axis=1) <= lams
            if early is not None:
                ok &= ~(early & now).any(axis=1)
            return ok

        in_tail = jobs is not None and r >= jobs
        idle = np.zeros(settings, dtype=bool)
        if repeats is not None:
            repeaters = repeats.plan(r)
            if in_tail:
                idle = ~repeaters.any(axis=1)
        elif d1_only is not None and in_tail:
            idle = d1_only & (d1_arrivals >= W - 1).all(axis=1)
        conform = conforms(k[:, r]) | idle
        kept = np.where(conform, k[:, r], 0)
        durations = np.where(conform, np.minimum(cut[:, r], slowest[:, r]), slowest[:, r])
        if partial and not conform.all():
            low, high = np.zeros(settings, dtype=np.int64), np.where(conform, k[:, r], k[:, r] - 1)
            while np.any(low < high):
                mid = (low + high + 1) // 2
                ok = conforms(mid)
                low, high = np.where(ok, mid, low), np.where(ok, high, mid - 1)
            kept = np.where(conform, k[:, r], low)
            waited = view.ascending[r, view.n - kept - 1] * scales + offsets
            durations = np.where(conform, durations, waited)
        kept = np.where(idle, 0, kept)
        durations = np.where(idle, 0.0, durations)
        counted = kept
        if repeats is not None:
            stragglers = view.slow_rank[r][None, :] < kept[:, None]
            exempt = repeats.record(r, kept, stragglers, repeaters, job_exists=not in_tail)
            counted = np.where(exempt, 0, kept)
        elif d1_only is not None and r >= jobs - 1:
            d1_arrivals += view.slow_rank[r][None, :] >= kept[:, None]
        history[rows, r] = view.prefix[r][counted]
        total += durations
        waits += ~conform
    return total, waits


def _union(history: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
    """OR of the recorded bitsets of rounds lo … hi−1 ((P, words)), None when empty."""
    if hi <= lo:
        return None
    if hi == lo + 1:
        return history[:, lo]
    return np.bitwise_or.reduce(history[:, lo:hi], axis=1)


class _SelectiveRepeats:
    """SR-SGC's repeat bookkeeping for P settings: who misses each recent job (bool (P, n))."""

    def __init__(self, s: np.ndarray, B: int, n: int):
        self.s, self.B, self.n = np.asarray(s, dtype=np.int64), B, n
        self.missing: dict[int, np.ndarray] = {}

    def plan(self, r: int) -> np.ndarray:
        """Round r's repeaters: the lowest-numbered v−s of the v workers missing job r−B."""
        missing = self.missing.pop(r - self.B, None)
        repeaters = np.zeros((len(self.s), self.n), dtype=bool)
        if missing is None:
            return repeaters
        excess = missing.sum(axis=1) - self.s
        rows = np.flatnonzero(excess > 0)
        if len(rows):
            some = missing[rows]
            repeaters[rows] = some & (np.cumsum(some, axis=1, dtype=np.int32) <= excess[rows, None])
        return repeaters

    def record(self, r: int, kept: np.ndarray, stragglers: np.ndarray, repeaters: np.ndarray,
               job_exists: bool) -> np.ndarray:
        """Store who misses job r (``kept``: how many straggled); returns the settings whose
        round-r stragglers are exempt."""
        if not job_exists:
            return np.zeros(len(self.s), dtype=bool)
        self.missing[r] = stragglers | repeaters
        return ~repeaters.any(axis=1) & (kept <= self.s)
