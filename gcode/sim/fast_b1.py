"""Window replays of (1, W, λ) settings with no bitsets: what the auto tuner runs every decision.

:func:`bursty_runtimes_b1` equals :func:`gcode.sim.fast.bursty_runtimes` with B = 1 and no job
limit (a window replay) bit for bit (``tests/sim/test_fast_b1.py``), in O(1) work per setting and
round instead of O(n/64) per check and O(n²/64) per round for the prefix bitsets:

* With B = 1 a round's straggler set must miss every recorded set of the W−1 rounds before it
  ("early" is all of "recent"). So the recorded sets of any W−1 consecutive rounds are pairwise
  disjoint, and |recent ∪ now| is the sum of their sizes plus the new set's.
* Every recorded set is the h slowest workers of its round, so "round r's c slowest miss round
  r′'s h slowest" is c ≤ :meth:`TraceView.first_overlap` (r′, r)[h], one lookup.
Together the model allows round r's c slowest iff c ≤ min(overlap bounds, λ − Σ h): the
partial fallback's binary search becomes a minimum.

SR-SGC's repeats need to know *who* missed a job (the lowest-numbered of them repeat). They are
kept as boolean rows only for the settings whose last job had more than s workers missing.
"""

from __future__ import annotations

import numpy as np

from .fast import TraceView
from .load_model import LoadModel


def bursty_runtimes_b1(view: TraceView, W: int, lams: np.ndarray, loads: np.ndarray,
                       slope: float | LoadModel, rounds: int, partial: bool = False,
                       srsgc_s: np.ndarray | None = None,
                       mus: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Runtime and waits of (1, W, λ) settings over ``rounds`` of ``view``, a job every round.

    Arguments as :func:`gcode.sim.fast.bursty_runtimes` (with B = 1 and ``jobs=None``)."""
    lams = np.asarray(lams, dtype=np.int64)
    scales, offsets = LoadModel.of(slope).affine(loads, view.n)
    k, cut, slowest = view.round_stats(scales, offsets, mus)
    settings, n = len(lams), view.n
    counted = np.zeros((settings, rounds), dtype=np.int64)  # size of each recorded set
    total = np.zeros(settings)
    waits = np.zeros(settings, dtype=np.int64)
    repeats = _Repeats(srsgc_s, view) if srsgc_s is not None else None
    for r in range(rounds):
        lo = max(0, r - W + 1)
        limit = lams - counted[:, lo:r].sum(axis=1)
        for earlier in range(lo, r):
            limit = np.minimum(limit, view.first_overlap(earlier, r)[counted[:, earlier]])
        k_r = k[:, r]
        conform = k_r <= limit  # the model allows round r's c slowest iff c <= limit
        durations = np.where(conform, np.minimum(cut[:, r], slowest[:, r]), slowest[:, r])
        kept = np.where(conform, k_r, 0)
        if partial and not conform.all():
            kept = np.where(conform, k_r, np.maximum(0, np.minimum(k_r - 1, limit)))
            waited = view.ascending[r, n - kept - 1] * scales + offsets
            durations = np.where(conform, durations, waited)
        counted[:, r] = kept
        if repeats is not None:
            counted[:, r] = np.where(repeats.step(r, kept), 0, kept)
        total += durations
        waits += ~conform
    return total, waits


class _Repeats:
    """SR-SGC's repeats with B = 1, as :class:`gcode.sim.fast._SelectiveRepeats` keeps them.

    Round r repeats job r−1 on the lowest-numbered v−s of the v workers that missed it. Only the
    count v is kept for every setting; the set itself (job r−1's stragglers, the h slowest of
    round r−1, with its own repeaters) is built as a bitset for the settings with v > s."""

    def __init__(self, s: np.ndarray, view: TraceView):
        self.s, self.view = np.asarray(s, dtype=np.int64), view
        words = (view.n + 63) // 64
        self.missed = np.zeros(len(self.s), dtype=np.int64)   # v of the last job
        self.kept = np.zeros(len(self.s), dtype=np.int64)     # its stragglers: the h slowest
        self.rows = np.zeros(0, dtype=np.int64)               # settings with repeaters …
        self.repeaters = np.zeros((0, words), dtype=np.uint64)  # … and who they were (bitsets)

    def step(self, r: int, kept: np.ndarray) -> np.ndarray:
        """Plan round r's repeaters, record that round r's ``kept`` slowest missed job r;
        returns the settings whose round-r stragglers are exempt from later model checks."""
        excess = self.missed - self.s
        rows = np.flatnonzero(excess > 0) if r > 0 else np.zeros(0, dtype=np.int64)
        repeaters = np.zeros((len(rows), self.repeaters.shape[1]), dtype=np.uint64)
        if len(rows):
            missing = self.view.slowest_bitsets(r - 1, self.kept[rows])
            if len(self.rows):  # the settings that also had repeaters in round r−1
                had = np.searchsorted(self.rows, rows)
                found = (had < len(self.rows)) & (self.rows[np.minimum(had, len(self.rows) - 1)] == rows)
                missing[found] |= self.repeaters[had[found]]
            repeaters = _lowest_bits(missing, excess[rows])
        self.missed = kept.copy()
        if len(rows):
            stragglers = self.view.slowest_bitsets(r, kept[rows])
            self.missed[rows] = np.bitwise_count(stragglers | repeaters).sum(axis=1)
        self.kept, self.rows, self.repeaters = kept, rows, repeaters
        exempt = kept <= self.s
        exempt[rows] = False
        return exempt


def _lowest_bits(bits: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The ``count`` lowest set bits of each bitset row (each row has at least that many)."""
    rows = np.arange(len(bits))
    cumulative = np.cumsum(np.bitwise_count(bits), axis=1, dtype=np.int64)
    word = (cumulative < count[:, None]).sum(axis=1)  # the word holding the count-th bit
    before = np.where(word > 0, cumulative[rows, np.maximum(word - 1, 0)], 0)
    out = np.where(np.arange(bits.shape[1])[None, :] < word[:, None], bits, np.uint64(0))
    little = bits[rows, word].astype("<u8")  # bit j of a word is worker 64·word + j
    last = np.unpackbits(little[:, None].view(np.uint8), axis=1, bitorder="little")
    last &= np.cumsum(last, axis=1) <= (count - before)[:, None]
    out[rows, word] = np.packbits(last, axis=1, bitorder="little").view("<u8")[:, 0]
    return out
