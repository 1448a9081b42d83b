"""``--scheme auto``: an online tuner that picks the scheme, its parameters and its round-ending
policy as it goes, and never looks ahead.

It is a round-ending :class:`Policy` bound to a :class:`SwitchingScheme`:
  * it ends each round with the current candidate's policy (policy.py);
  * after each round it sees what a live coordinator sees: the arrived workers' times, NaN for
    the others (known only to be slower than the round's end), and the part of each time that
    grows with the load (a live worker's compute time). From these it fits the load model
    (load_fit.py: additive or proportional, with its slope), turns the times into base times,
    and advances every candidate of :func:`candidate_grid` through the round
    (:class:`CandidateReplay`; round_costs.py keeps the window of costs). A worker cut off is a
    straggler under every candidate's cut; a candidate that would have waited for it is charged
    a guess from the ratios to the fastest seen in full rounds and in late results (a cut
    worker's result that came in after its round; it also revises its round's costs for
    uncoded and GC);
  * at a job boundary where the switching machinery allows a switch (no segment draining), it
    weighs the last ``window`` rounds (each also replayed with ``stress`` more stragglers, a
    what-if weighed as one more round): a challenger must beat the current candidate on those
    rounds, paired round by round, by ``margin`` of the current's time, and its gain over the
    jobs left must exceed the switch's cost (the old segment drains T rounds). Between T = 0
    candidates that is all (such a switch is free and undone at once); into or out of a delayed
    scheme it must also wait ``settle_rounds``, win by ``confidence`` standard errors, and win
    without its single best round; into one from uncoded or GC the standard errors are scaled
    by sqrt(2 ln P) over the P candidates (``multiplicity``: the winner of many noisy paired
    comparisons is picked for its luck as much as for its merit). Otherwise the tuner stays: a
    costly switch needs evidence over several rounds, which bounds what a wrong one can cost.

Only past rounds are ever used, so every decision is out of sample. Switching follows
:mod:`gcode.codes.switching` and never mis-decodes. Per round the work is one vectorized replay
step over the grid and a window of sums (``gcode bench auto`` measures it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codes import GC_CODE_KINDS
from ..codes.switching import SwitchingScheme
from .candidates import POLICY_KINDS, Candidate, CandidateConfig, candidate_grid
from .load_fit import LoadFit
from .load_model import LoadModel
from .policy import Policy
from .replay import CandidateReplay
from .round_costs import RoundCosts


@dataclass(frozen=True)
class OnlineConfig:
    # defaults: chosen by `gcode bench auto` on its tuning suite only (never on the traces it
    # evaluates): the least mean regret
    window: int = 64            # rounds a decision weighs
    every: int = 1              # decide at every ``every``-th job boundary
    margin: float = 0.0         # a challenger must save this share of the current's time
    confidence: float = 0.5     # … by this many standard errors of the paired difference
    mus: tuple[float, ...] = (0.25, 0.5, 1.0)    # partial and paper cuts
    gaps: tuple[float, ...] = (0.05, 0.1, 0.2)   # gap policy
    max_delay: int = 1
    partial: bool = True        # False: the paper policy only, no partial waits
    start_mu: float = 1.0       # μ of the start candidate when it cuts (a paper/partial start)
    start: str = "gc"           # before any round: "gc" (see OnlineTuner._start_candidate) or "uncoded"
    start_s_fraction: float = 1 / 8
    gc_code: str | None = "group"  # the code of GC and of bursty D2 groups; None: every kind
    min_history: int = 1        # first decision once this many rounds are seen
    grid_points: int = 24       # s and λ values, geometric over 1 … n
    ratio_sample: int = 4096    # ratios to the fastest kept for guessing cut workers' times
    stress: float = 0.05        # share of workers more cut off in the what-if round (_decide)
    settle_rounds: int = 6      # rounds seen before a switch that starts or ends a delayed scheme
    smooth: float = 0.7         # bandwidth of the straggler-count smoothing of GC (round_costs.py); 0: off
    multiplicity: bool = False  # into a delayed scheme: confidence × sqrt(2 ln candidates) (_decide)

    def __post_init__(self):
        if self.window < 2:
            raise ValueError(f"window must be >= 2 rounds, got {self.window}")
        if not 1 <= self.min_history <= self.window:
            raise ValueError(f"min_history must be in [1, window], got {self.min_history}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")
        if not self.confidence >= 0:
            raise ValueError(f"confidence must be >= 0, got {self.confidence}")
        if not self.mus or any(not mu > 0 for mu in self.mus):
            raise ValueError(f"mus must be a non-empty tuple of values > 0, got {self.mus}")
        if self.max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {self.max_delay}")
        if self.start not in ("uncoded", "gc"):
            raise ValueError(f"start must be 'uncoded' or 'gc', got {self.start!r}")
        if not 0 < self.start_s_fraction < 1:
            raise ValueError(f"start_s_fraction must be in (0, 1), got {self.start_s_fraction}")
        _ = self.candidates  # validates the rest

    @property
    def candidates(self) -> CandidateConfig:
        return CandidateConfig(gc_codes=(self.gc_code,) if self.gc_code else GC_CODE_KINDS,
                               policies=POLICY_KINDS if self.partial else ("paper",),
                               mus=self.mus, gaps=self.gaps, max_delay=self.max_delay,
                               grid_points=self.grid_points)


class OnlineTuner(Policy):
    """The auto scheme's policy and brain; ``self.scheme`` is the scheme to drive."""

    name = "auto"

    def __init__(self, n: int, jobs: int | None, load_slope: float | LoadModel,
                 cfg: OnlineConfig = OnlineConfig()):
        self.n, self.jobs, self.cfg = n, jobs, cfg
        self.prior = LoadModel.of(load_slope)
        self.grid = candidate_grid(n, cfg.candidates)
        self.current = self._start_candidate()
        self.scheme = SwitchingScheme(n, jobs, self.current.make_scheme(n, jobs))
        self.decisions: list[dict] = []
        self._delays = np.array([c.delay for c in self.grid.candidates])
        self._loads = np.concatenate([b.loads for b in (self.grid.s_block, *self.grid.b1_blocks)])
        codes: dict = {}  # candidates of one scheme and parameters share an id (they differ in policy)
        self._codes = np.array([codes.setdefault(c.key()[:2], len(codes)) for c in self.grid.candidates])
        self._union_z = cfg.confidence * (np.sqrt(2 * np.log(len(self.grid))) if cfg.multiplicity else 1.0)
        self._reset_estimates()

    def _start_candidate(self) -> Candidate:
        """Before any round: uncoded under a proportional prior (coding multiplies every
        worker's time), else GC with s ≈ n·start_s_fraction under the earliest policy (an
        additive load costs little; a straggler costs a whole round)."""
        first = self.grid.candidates[0]
        if self.cfg.start == "uncoded" or self.n < 2 or self.prior.kind == "proportional":
            return first
        target = self.n * self.cfg.start_s_fraction
        policy = ("earliest", 0.0) if self.cfg.partial else ("paper", self.cfg.start_mu)
        gc = [c for c in self.grid.candidates if c.scheme == "gc" and (c.policy, c.mu) == policy]
        return min(gc, key=lambda c: abs(c.params["s"] - target), default=first)

    def _reset_estimates(self) -> None:
        self.fit = LoadFit()
        self.loads = self.prior
        self.replay = CandidateReplay(self.grid, self.loads)
        self.evidence = RoundCosts(self.grid, self.replay, window=self.cfg.window, stress=self.cfg.stress,
                                 smooth=self.cfg.smooth, ratio_sample=self.cfg.ratio_sample)
        self.events: list[dict] = []  # every observation, for checkpoints

    # ---- the evidence (round_costs.py), as the window sees it ---------------------------------
    @property
    def seen(self) -> int:
        return self.evidence.seen

    @property
    def costs(self) -> np.ndarray:
        return self.evidence.costs

    @property
    def stressed(self) -> np.ndarray:
        return self.evidence.stressed

    @property
    def smoothing(self) -> np.ndarray:
        return self.evidence.smoothing

    @property
    def counts(self) -> list[int]:
        return self.evidence.counts

    @property
    def ratios(self) -> np.ndarray:
        return self.evidence.ratios

    def _straggler_count(self, filled: np.ndarray) -> int:
        return self.evidence.straggler_count(filled)

    # ---- the round-ending policy: the current candidate's -----------------------------------
    @property
    def policy(self) -> Policy:
        return self.current.make_policy()

    @property
    def mu(self) -> float:
        return self.current.mu

    @property
    def partial_fallback(self) -> bool:
        return self.policy.partial_fallback

    @property
    def ends_when_conforming(self) -> bool:
        return self.policy.ends_when_conforming

    @property
    def cut_follows_latest(self) -> bool:
        return self.policy.cut_follows_latest

    def deadline(self, fastest: float) -> float:
        return self.policy.deadline(fastest)

    def resolve(self, times, conforms):
        return self.policy.resolve(times, conforms)

    # ---- the load model ---------------------------------------------------------------------
    @property
    def load_slope(self) -> float:
        """The additive model's seconds per unit load (a live run may measure and set it)."""
        return self.loads.slope

    @load_slope.setter
    def load_slope(self, slope: float) -> None:
        self.prior = LoadModel("additive", float(slope))
        if not self.fit.rounds:
            self._set_loads(self.prior)

    def _set_loads(self, loads: LoadModel) -> None:
        if loads != self.loads:
            self.loads = loads
            self.replay.set_load_model(loads)

    # ---- observing rounds -------------------------------------------------------------------
    def prime(self, base_times: np.ndarray) -> None:
        """Seed the tuner with base times of rounds before this run (a probe trace, in the prior
        load model's base: zero-load times for the additive model) and decide at once."""
        for row in np.atleast_2d(np.asarray(base_times, dtype=np.float64)):
            self._apply({"kind": "prime", "times": row})
        if self.seen >= self.cfg.min_history:
            self._decide(len(self.scheme.history))

    def observe(self, r: int, times: np.ndarray, load: float, end: float,
                compute: np.ndarray | None = None) -> None:
        self._pack_lates()
        self._apply({"kind": "round", "r": int(r), "times": np.asarray(times, dtype=np.float64),
                     "compute": None if compute is None else np.asarray(compute, dtype=np.float64),
                     "load": float(load), "end": float(end)})
        if self.seen >= self.cfg.min_history and (r + 1) % self.cfg.every == 0:
            self._decide(r + 1)

    def observe_late(self, r: int, worker: int, time: float) -> None:
        """A cut worker's result came in after round r. Late results that come in one after
        another for one round are one event (at n workers a round can have n of them: one
        event each took 110 MiB at n = 4096 over 200 rounds)."""
        last = self.events[-1] if self.events else None
        if last is not None and last["kind"] == "lates" and last["r"] == r and type(last["times"]) is list:
            last["workers"].append(int(worker))
            last["times"].append(float(time))
            self.evidence.late(int(r), float(time))
            return
        self._pack_lates()
        self._apply({"kind": "lates", "r": int(r), "workers": [int(worker)], "times": [float(time)]})

    def _pack_lates(self) -> None:
        """Close the open batch of late results: its lists become arrays."""
        last = self.events[-1] if self.events else None
        if last is not None and last["kind"] == "lates" and isinstance(last["times"], list):
            last["workers"] = np.array(last["workers"], dtype=np.int64)
            last["times"] = np.array(last["times"], dtype=np.float64)

    def _apply(self, event: dict) -> None:
        """Learn from one observation (kept in ``events``, replayed on restore)."""
        self.events.append(event)
        if event["kind"] == "prime":
            row = event["times"]
            self.evidence.advance(row, float(row.max()))
        elif event["kind"] == "lates":
            for time in event["times"]:
                self.evidence.late(int(event["r"]), float(time))
        elif event["kind"] == "late":  # one late result: checkpoints written before batches
            self.evidence.late(event["r"], event["time"])
        else:
            self._observe_round(event)

    def _observe_round(self, e: dict) -> None:
        """Fit the load model to the round, turn its times into base times, replay them."""
        self.evidence.revise()  # in the load model the late results came in under
        times, load = e["times"], e["load"]
        if e["compute"] is not None:
            self.fit.add(times, e["compute"], load)
            self._set_loads(self.fit.model(self.prior))
        base = self.loads.base(np.where(np.isnan(times), np.inf, times), load)
        scale, offset = self.loads.affine(load, self.n)
        end = float((e["end"] - offset) / scale)
        self.evidence.add_round(e["r"], base, end, scale, offset)

    # ---- deciding ---------------------------------------------------------------------------
    def _decide(self, next_round: int) -> None:
        """Switch at ``next_round`` to the challenger the window supports strongly enough."""
        if not self.scheme.can_switch(next_round):
            return
        k = min(self.seen, self.cfg.window)
        # a round with `stress` more stragglers weighs as one more round among the k seen: a
        # choice that only just coped with every round seen pays for the next, worse one
        window = self.costs[:k] + (self.stressed[:k] - self.costs[:k]) / (k + 1)
        here = self.grid.index[self.current.key()]
        free = (self._delays == 0) & (self.current.delay == 0)
        # between T = 0 choices GC's costs carry the smoothed straggler count (round_costs.py); a
        # delayed scheme's cannot, so a switch into or out of one is weighed on the rounds as seen
        smoothed = window.copy()
        smoothed[:, :self.replay.bounds[1]] += self.smoothing[:k]
        diff = np.where(free, smoothed[:, here][:, None] - smoothed,
                        window[:, here][:, None] - window)  # > 0: the challenger was faster
        advantage = diff.mean(axis=0)
        spread = diff.std(axis=0, ddof=1) / np.sqrt(k) if k > 1 else np.full(len(self.grid), np.inf)
        current_mean = float(window[:, here].mean())
        left = (self.jobs - next_round) if self.jobs is not None else self.cfg.window
        gain = advantage * left - self._switch_cost(window, here)
        # a switch between T = 0 candidates (free) is free and undone at once: follow the leader.
        # One that starts or ends a delayed scheme must be supported by the evidence, and only
        # once every candidate's deferred cost (its window of W rounds) had time to show.
        # … and not on the strength of one round: without its best round it must still win
        robust = (diff.sum(axis=0) - diff.max(axis=0)) / max(1, k - 1) > 0
        # into a delayed scheme from T = 0: the best of many noisy challengers looks better than
        # it is, so the bound covers them all (confidence × sqrt(2 ln candidates), a union bound
        # over Gaussian tails); a run stays uncoded or GC unless a delayed scheme clearly wins
        need = np.where((self._delays > 0) & (self.current.delay == 0), self._union_z, self.cfg.confidence)
        backed = (k >= self.cfg.settle_rounds) & (advantage > need * spread) & robust
        strong = (advantage > self.cfg.margin * current_mean) & (gain > 0) & (free | backed)
        strong[here] = False
        strong &= ~self.evidence.blind  # its cost in the latest round is a guess without data
        decision = {"round": next_round, "current": self.current.to_dict(),
                    "current_mean_s": current_mean, "switched": False, "rounds_weighed": k,
                    "load_model": self.loads.kind, "load_slope": float(self.loads.slope)}
        if strong.any():
            best = int(np.argmax(np.where(strong, gain, -np.inf)))
            choice = self.grid.candidates[best]
            decision.update(best=choice.to_dict(), best_mean_s=float(window[:, best].mean()),
                            expected_gain_s=float(gain[best]), switched=True)
            if (choice.scheme, choice.params) != (self.current.scheme, self.current.params):
                self.scheme.switch(next_round, lambda jobs: choice.make_scheme(self.n, jobs))
            self.current = choice
        self.decisions.append(decision)

    def _switch_cost(self, window: np.ndarray, here: int) -> np.ndarray:
        """Seconds a switch from ``here`` adds over the challenger's own rounds (nothing between
        T = 0 candidates): the current segment drains its T rounds alongside the new one, each
        at both loads and waiting for whichever of the two waited longer in the window's rounds
        (a load model's affine map at the summed load), and a run that ends in a delayed
        scheme has T more rounds (its tail), charged at the challenger's mean round."""
        a, c = self.replay.affine()
        waited = (window - c) / a  # each candidate's waited-for base time, round by round
        both_a, both_c = self.loads.affine(self._loads[here] + self._loads, self.n)
        drain = both_a * np.maximum(waited, waited[:, here][:, None]) + both_c - window
        tail = np.maximum(self._delays - self.current.delay, 0) * window.mean(axis=0)
        return np.where(self._codes == self._codes[here], 0.0, self.current.delay * drain.mean(axis=0) + tail)

    # ---- checkpoints ------------------------------------------------------------------------
    def state(self) -> dict:
        """The tuner's learned state: every observation (replayed on restore), the current
        candidate and the decisions."""
        self._pack_lates()
        return {"events": [dict(e) for e in self.events], "current": self.current.to_dict(),
                "decisions": list(self.decisions),
                "prior": {"kind": self.prior.kind, "slope": self.prior.slope,
                          "trace_load": self.prior.trace_load}}

    def restore(self, state: dict, scheme: SwitchingScheme) -> None:
        """Adopt a saved :meth:`state` and the scheme restored alongside it."""
        self.scheme = scheme
        prior = state["prior"]
        self.prior = LoadModel(prior["kind"], float(prior["slope"]), prior.get("trace_load"))
        self._reset_estimates()
        for event in state["events"]:
            event = dict(event)
            for key in ("times", "compute"):
                if event.get(key) is not None:
                    event[key] = np.asarray(event[key], dtype=np.float64)
            self._apply(event)
        self.current = Candidate.from_dict(state["current"])
        self.decisions = list(state["decisions"])
