"""The online tuner's evidence (:mod:`gcode.sim.online`): every candidate's cost in each of the
last ``window`` rounds, as replayed from the rounds' base times.

A worker cut off (+inf) is a straggler under every candidate's cut; a candidate that would have
waited for it is charged a guess from the ratios to the fastest seen in full rounds and in late
results (a cut worker's result that came in after its round; it also revises its round's costs
for uncoded and GC, once per round, before the next round is weighed). Each round is also
replayed with ``stress`` more stragglers (a what-if), and GC's cost with its straggler count
smoothed (:meth:`RoundCosts._smoothing`). Invariant: ``costs[slot]``, ``stressed[slot]`` and
``smoothing[slot]`` describe the round stored in ``slot`` (``seen % window``), every late result
that came in for it before the next round included.
"""

from __future__ import annotations

import numpy as np

from .candidates import POLICY_CODE, CandidateGrid
from .replay import CandidateReplay


class RoundCosts:
    """A ring of per-round candidate costs over ``replay`` (which owns the load model)."""

    def __init__(self, grid: CandidateGrid, replay: CandidateReplay, *, window: int, stress: float,
                 smooth: float, ratio_sample: int):
        self.n, self.grid, self.replay = grid.n, grid, replay
        self.window, self.stress, self.smooth, self.ratio_sample = window, stress, smooth, ratio_sample
        self.costs = np.zeros((window, len(grid)))  # ring of per-round costs
        self.stressed = np.zeros((window, len(grid)))  # … with more stragglers
        self.smoothing = np.zeros((window, replay.bounds[1]))  # … GC's, _smoothing
        self.counts: list[int] = []  # straggler count of each round in the window
        self.seen = 0
        self.ratios = np.zeros(0)  # times / their round's fastest, from full rounds and late results
        self.rounds_seen: dict[int, tuple] = {}  # r -> scale, offset, ring slot, base times, end
        self.revised: set[int] = set()  # rounds with late results not yet in their costs (revise)
        # slot -> the delayed candidates whose cost in that round waited for a cut worker, and
        # the stragglers they recorded: (columns, kept) as seen and in the what-if (revise)
        self.guessed: dict[int, tuple] = {}
        # candidates whose cost in the latest round waited for a cut worker whose time no data
        # could tell (no ratio seen above the round's end): a guess, not evidence (online.py)
        self.blind = np.zeros(len(grid), dtype=bool)

    def add_round(self, r: int, base: np.ndarray, end: float, scale: float, offset: float) -> None:
        """A live round (base times, its end in base time, the load model's affine map), kept
        ``window`` rounds for its late results (:meth:`revise` the earlier ones first)."""
        slot = self.advance(base, end)
        self.rounds_seen = {k: v for k, v in self.rounds_seen.items() if k > r - self.window}
        self.rounds_seen[r] = (float(scale), float(offset), slot, base.copy(), end)

    def late(self, r: int, time: float) -> None:
        """A cut worker's result came in after its round: its ratio to that round's fastest joins
        the sample, and the round's costs of the candidates without history (uncoded, GC) are
        recomputed with its time known before the next round is weighed (:meth:`revise`)."""
        info = self.rounds_seen.get(r)
        if info is None:
            return
        scale, offset, slot, row, end = info
        late = (time - offset) / scale
        fastest = float(row.min())
        if fastest > 0:  # as in full rounds: a base time may be 0 live (a fitted load model)
            self._add_ratios(np.array([late / fastest]))
        cut = np.flatnonzero(~np.isfinite(row))
        if not len(cut):
            return
        row[cut[0]] = late  # which cut worker it was does not matter to these candidates
        end = max(end, late)  # results come in in finish order: the round's other cut workers
        self.rounds_seen[r] = (scale, offset, slot, row, end)  # finish later still
        self.revised.add(r)

    def revise(self) -> None:
        """Recompute the costs in the rounds that late results came in for since the last round
        was seen (once per round, not per result: at n workers a round can have many): uncoded
        and GC replayed anew; a delayed candidate that waited for a cut worker keeps the
        stragglers it recorded (its history) and is charged the wait with the late times known."""
        s = self.replay.bounds[1]
        for r in sorted(self.revised):
            if r in self.rounds_seen:
                _, _, slot, row, end = self.rounds_seen[r]
                out = self.replay.s_block(row, end)
                self.costs[slot, :s], self.stressed[slot, :s] = self._with_stress(
                    out, row, end, self.replay.s_block, slice(0, s))
                self.smoothing[slot] = self._smoothing(row, end)
                seen, what_if = self.guessed.get(slot, (None, None))
                worse = self._worse(row)
                for costs, rows, guessed in ((self.costs, row, seen), (self.stressed, worse, what_if)):
                    if guessed is not None and rows is not None and len(guessed[0]):
                        costs[slot, guessed[0]] = self._waited(rows, end, *guessed)
        self.revised.clear()

    def _add_ratios(self, ratios: np.ndarray) -> None:
        self.ratios = np.concatenate([self.ratios, ratios])[-self.ratio_sample:]

    def advance(self, base: np.ndarray, end: float) -> int:
        """Replay every candidate through a round of base times (+inf: cut off at base ``end``)
        and store their costs in the ring; returns the round's slot."""
        out = self.replay.step(base, end)
        fastest = float(base.min())
        if np.isfinite(base).all() and fastest > 0:
            self._add_ratios(base / fastest)
        slot = self.seen % self.window
        self.blind = ~np.isfinite(out.durations) & (not (self.ratios * fastest > end).any())
        self.costs[slot], self.stressed[slot] = self._with_stress(out, base, end, self.replay.peek,
                                                                  guessed=slot)
        self.counts = (self.counts + [self.straggler_count(self._filled(base, end))])[-self.window:]
        self.smoothing[slot] = self._smoothing(base, end)
        self.seen += 1
        return slot

    def _with_stress(self, out, base: np.ndarray, end: float, what_if, cols=slice(None),
                     guessed: int | None = None):
        """(costs, what-if costs) of a round: :meth:`_impute`d, and the same round with
        ``stress`` more workers cut off (:meth:`_worse`), resolved by ``what_if(base, end)``.
        ``guessed``: the round's slot, to keep which delayed candidates were charged a guess."""
        seen = self._impute(out, base, end, cols)
        what_if_guessed = None
        stressed = out.durations
        worse = self._worse(base)
        if worse is not None:
            more = what_if(worse, float(base[np.isfinite(worse)].max()))
            what_if_guessed = self._impute(more, worse, end, cols)
            stressed = more.durations
        if guessed is not None:
            self.guessed[guessed] = tuple(None if g is None else self._delayed(*g)
                                          for g in (seen, what_if_guessed))
        return out.durations, stressed

    def _worse(self, base: np.ndarray) -> np.ndarray | None:
        """The what-if round: ``stress`` · n more of the arrived workers (the slowest) cut off."""
        arrived = int(np.isfinite(base).sum())
        extra = min(arrived - 1, int(np.ceil(self.stress * self.n)))
        if extra <= 0:
            return None
        worse = base.copy()
        worse[np.argsort(base, kind="stable")[arrived - extra:arrived]] = np.inf
        return worse

    def _delayed(self, columns: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The delayed candidates (they keep history) among ``columns``, with their ``kept``."""
        mine = columns >= self.replay.bounds[1]
        return columns[mine], kept[mine]

    def straggler_count(self, filled: np.ndarray) -> int:
        """The workers after the round's largest relative jump in time (in its slower half)."""
        half = filled[self.n // 2:]
        if len(half) < 2 or not half[0] > 0:
            return 0
        return len(half) - 1 - int(np.argmax(half[1:] / half[:-1]))

    def _smoothing(self, base: np.ndarray, end: float) -> np.ndarray:
        """What GC's cost in this round gains when its straggler count is smoothed: under the
        earliest cut GC with s waits for the (n−s)-th arrival, and with δ more stragglers for the
        (n−s+δ)-th; the round's cost is averaged over δ ~ N(0, h²), a kernel estimate of the count
        around the one seen. h = ``smooth`` · sd / √k over the k rounds seen (the learning cost
        fades as a standard error does; Silverman's k^(−1/5) kept too much of it on the tuning
        suite), sd the larger of the counts' spread and the binomial sd of their mean (workers that
        straggle independently). A smooth tail (Pareto) barely changes; at a cliff (two speeds)
        a choice that only just coped with the rounds seen pays for the next, slightly worse one.
        Additive model only: there one more s costs little, so a slow round is what matters."""
        s_end = self.replay.bounds[1]
        extra = np.zeros(s_end)
        if not self.smooth > 0 or self.replay.loads.kind != "additive" or not self.counts:
            return extra
        n, k = self.n, len(self.counts)
        mean = float(np.mean(self.counts))
        sd = max(np.sqrt(mean * (1 - mean / n)), float(np.std(self.counts)))
        h = self.smooth * sd / np.sqrt(k)
        if not h > 0:
            return extra
        deltas = np.arange(-int(np.ceil(3 * h)), int(np.ceil(3 * h)) + 1)
        weights = np.exp(-0.5 * (deltas / h) ** 2)
        block = self.grid.s_block
        waits_for = n - 1 - np.minimum(block.s, n - 1)
        filled = self._filled(base, end)
        smoothed = filled[np.clip(waits_for[:, None] + deltas[None, :], 0, n - 1)] @ (weights / weights.sum())
        a = self.replay.affine()[0][:s_end]
        gc = (block.policy == POLICY_CODE["earliest"]) & (block.s > 0)
        extra[gc] = (a * (smoothed - filled[waits_for]))[gc]
        return extra

    def _filled(self, base: np.ndarray, end: float) -> np.ndarray:
        """The round's times, ascending, cut workers (+inf) at their guesses (:meth:`_impute`)."""
        fastest = float(base.min())
        cut = ~np.isfinite(base)
        k = int(cut.sum())
        if not k:
            return np.sort(base)
        above = np.sort(self.ratios[self.ratios * fastest > end])
        if len(above):
            guess = above[((np.arange(k) + 0.5) / k * len(above)).astype(np.int64)] * fastest
        else:
            guess = np.full(k, max(2.0 * fastest, float(np.nextafter(end, np.inf))))
        return np.concatenate([np.sort(base[~cut]), np.sort(guess)])

    def _impute(self, out, base: np.ndarray, end: float, cols=slice(None)):
        """Durations of the candidates that would have waited for workers cut off (+inf). A cut
        worker is a straggler under every candidate's cut (the replay saw it so); what waiting
        for it costs is guessed from the ratios to the fastest seen in full rounds and in late
        results, those above the round's end, in order of their quantiles; with none above it,
        twice the fastest or just above the end, whichever is later. Returns the guessed
        candidates (grid columns) and the stragglers each recorded, or None."""
        unknown = np.flatnonzero(~np.isfinite(out.durations))
        if not len(unknown):
            return None
        columns = np.arange(len(self.grid))[cols][unknown]
        out.durations[unknown] = self._waited(base, end, columns, out.kept[unknown])
        return columns, out.kept[unknown].copy()

    def _waited(self, base: np.ndarray, end: float, columns: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """What the candidates ``columns`` take when each waits until ``kept`` are missing, cut
        workers at their guesses (:meth:`_filled`)."""
        a, c = (v[columns] for v in self.replay.affine())
        return a * self._filled(base, end)[self.n - 1 - kept] + c
