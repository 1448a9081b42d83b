"""``--scheme auto``: an online tuner that picks the scheme, its parameters and its round-ending
policy as it goes, and never looks ahead.

It is a round-ending :class:`Policy` bound to a :class:`SwitchingScheme`:
  * it ends each round with the current candidate's policy (policy.py);
  * after each round it sees what a live coordinator sees: the arrived workers' times, NaN for
    the others (known only to be slower than the round's end), and the part of each time that
    grows with the load (a live worker's compute time). From these it fits the load model
    (load_fit.py: additive or proportional, with its slope), turns the times into base times,
    and advances every candidate of :func:`candidate_grid` through the round
    (:class:`CandidateReplay`). A worker cut off is a straggler under every candidate's cut; a
    candidate that would have waited for it is charged the largest time the tuner has seen
    (``unknown_wait``: it is unknown, and a conservative guess never flatters a candidate);
  * at a job boundary where the switching machinery allows a switch (no segment draining), it
    weighs the last ``window`` rounds: a challenger must beat the current candidate on those
    rounds, paired round by round, by ``margin`` of the current's time and by ``confidence``
    standard errors, and its gain over the jobs left must exceed the switch's cost (the old
    segment drains T rounds under both loads). Otherwise the tuner stays: it switches only on
    strong evidence, which bounds what a wrong switch can cost.

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


@dataclass(frozen=True)
class OnlineConfig:
    window: int = 8             # rounds a decision weighs
    every: int = 1              # decide at every ``every``-th job boundary
    margin: float = 0.0         # a challenger must save this share of the current's time
    confidence: float = 1.0     # … by this many standard errors of the paired difference
    mus: tuple[float, ...] = (0.25, 0.5, 1.0)    # partial and paper cuts
    gaps: tuple[float, ...] = (0.05, 0.1, 0.2)   # gap policy
    max_delay: int = 1
    partial: bool = True        # False: the paper policy only, no partial waits
    start_mu: float = 1.0       # μ of the start candidate when it cuts (a paper/partial start)
    start: str = "gc"           # before any round: "gc" (see OnlineTuner._start_candidate) or "uncoded"
    start_s_fraction: float = 1 / 8
    gc_code: str | None = "fr"  # the code of GC and of bursty D2 groups; None: every kind
    min_history: int = 2        # first decision once this many rounds are seen
    grid_points: int = 24       # s and λ values, geometric over 1 … n

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
        self.candidates  # validates the rest

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
        self._min_rounds = 2 * max(b.W for b in self.grid.b1_blocks) if self.grid.b1_blocks else 1
        self._reset_estimates()

    def _start_candidate(self) -> Candidate:
        """Before any round: uncoded under the proportional model (coding multiplies every
        worker's time), else GC with s = ⌈n·start_s_fraction⌉ under the earliest policy (an
        additive load costs little; stragglers cost a round each)."""
        if self.cfg.start == "uncoded" or self.n < 2 or self.prior.kind == "proportional":
            return self.grid.candidates[0]
        s = min(self.n - 1, max(1, int(np.ceil(self.n * self.cfg.start_s_fraction))))
        key = ("gc", (("gc_code", self.cfg.gc_code or "fr"), ("s", s)))
        values = sorted({c.params["s"] for c in self.grid.candidates if c.scheme == "gc"},
                        key=lambda v: abs(v - s))
        policy, mu = ("earliest", 0.0) if self.cfg.partial else ("paper", self.cfg.start_mu)
        for v in values:  # the grid's s nearest the target
            key = Candidate("gc", {"s": v, "gc_code": self.cfg.gc_code or "fr"}, mu, policy).key()
            if key in self.grid.index:
                return self.grid.candidates[self.grid.index[key]]
        return self.grid.candidates[0]

    def _reset_estimates(self) -> None:
        self.fit = LoadFit()
        self.loads = self.prior
        self.replay = CandidateReplay(self.grid, self.loads)
        self.costs = np.zeros((self.cfg.window, len(self.grid)))  # ring of imputed durations
        self.seen = 0
        self.slowest_ratio = 2.0  # the largest slowest / fastest seen (at least the paper's μ = 1)
        self.previous = np.full(self.n, np.inf)  # the last round's base times (inf: cut off)
        self.log: dict[str, list] = {"times": [], "compute": [], "load": [], "end": []}

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
            self._log(row, None, None, float(row.max()))
            self._advance(row, float(row.max()))
        if self.seen >= self.cfg.min_history:
            self._decide(len(self.scheme.history))

    def observe(self, r: int, times: np.ndarray, load: float, end: float,
                compute: np.ndarray | None = None) -> None:
        times = np.asarray(times, dtype=np.float64)
        compute = None if compute is None else np.asarray(compute, dtype=np.float64)
        self._log(times, compute, float(load), float(end))
        self._estimate(times, compute, float(load), float(end))
        next_round = r + 1
        if self.seen >= self.cfg.min_history and next_round % self.cfg.every == 0:
            self._decide(next_round)

    def _log(self, times, compute, load, end) -> None:
        for key, value in zip(("times", "compute", "load", "end"), (times, compute, load, end)):
            self.log[key].append(value)

    def _estimate(self, times: np.ndarray, compute: np.ndarray | None, load: float, end: float) -> None:
        """Fit the load model to the round, and replay every candidate through it."""
        if compute is not None:
            self.fit.add(times, compute, load)
            self._set_loads(self.fit.model(self.prior))
        base = self.loads.base(np.where(np.isnan(times), np.inf, times), load)
        scale, offset = self.loads.affine(load, self.n)
        self._advance(base, float((end - offset) / scale))

    def _advance(self, base: np.ndarray, end: float) -> None:
        """Replay every candidate through a round of base times (+inf: cut off at base ``end``)
        and store their costs. A candidate that would have waited for a worker cut off is
        charged a guess of its time, never below ``end``: the worker's time of the round before
        if it arrived then (workers stay slow or fast for a while), else the largest ratio to
        the fastest seen so far, at least 2 (it was cut before too: assume it is as slow as any seen).
        """
        out = self.replay.step(base)
        arrived = np.isfinite(base)
        fastest = float(base.min())
        if fastest > 0:  # the slowest seen, or the round's end when workers were cut off
            slowest = float(base.max()) if arrived.all() else end
            self.slowest_ratio = max(self.slowest_ratio, slowest / fastest)
        unknown = ~np.isfinite(out.durations)
        if unknown.any():
            guess = np.where(np.isfinite(self.previous), self.previous, self.slowest_ratio * fastest)
            filled = np.sort(np.where(arrived, base, np.maximum(guess, np.nextafter(end, np.inf))))
            a, c = self._affine()
            waited = filled[self.n - 1 - out.kept[unknown]]
            out.durations[unknown] = a[unknown] * waited + c[unknown]
        self.previous = base
        self.costs[self.seen % self.cfg.window] = out.durations
        self.seen += 1

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        pairs = self.replay._affine
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])

    # ---- deciding ---------------------------------------------------------------------------
    def _decide(self, next_round: int) -> None:
        """Switch at ``next_round`` to the challenger the window supports strongly enough."""
        if not self.scheme.can_switch(next_round):
            return
        k = min(self.seen, self.cfg.window)
        window = self.costs[:k] if self.seen <= self.cfg.window else self.costs
        here = self.grid.index[self.current.key()]
        diff = window[:, here][:, None] - window  # > 0: the challenger was faster
        advantage = diff.mean(axis=0)
        spread = diff.std(axis=0, ddof=1) / np.sqrt(k) if k > 1 else np.zeros(len(self.grid))
        current_mean = float(window[:, here].mean())
        left = (self.jobs - next_round) if self.jobs is not None else self.cfg.window
        cost = self._switch_cost(window.mean(axis=0))
        gain = advantage * left - cost
        delays = self._delays
        # a switch between T = 0 candidates is free and undone at once: follow the leader; one
        # that starts or ends a delayed scheme must be supported by the evidence, and not
        # before every candidate's deferred cost (its window of W rounds) had time to show
        free = (delays == 0) & (self.current.delay == 0)
        settled = k >= self._min_rounds
        strong = (advantage > self.cfg.margin * current_mean) & (gain > 0) & (
            free | (settled & (advantage > self.cfg.confidence * spread)))
        strong[here] = False
        decision = {"round": next_round, "current": self.current.to_dict(),
                    "current_mean_s": current_mean, "switched": False,
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

    def _switch_cost(self, means: np.ndarray) -> np.ndarray:
        """Seconds a switch to each candidate adds: the current segment drains T rounds that
        also carry its load (zero for T = 0)."""
        drain = self.current.delay
        if drain == 0:
            return np.zeros(len(self.grid))
        a, c = self._affine()
        here = self.grid.index[self.current.key()]
        a_here, c_here = a[here], c[here]
        # the current's load on top of each candidate's, at a typical round's base time
        base = (means[here] - c_here) / a_here
        return drain * (a_here * base + c_here) * 0.5

    # ---- checkpoints ------------------------------------------------------------------------
    def state(self) -> dict:
        """The tuner's learned state: every observation (replayed on restore), the current
        candidate and the decisions."""
        compute = self.log["compute"]
        has_compute = [c is not None for c in compute]
        rows = np.array(self.log["times"], dtype=np.float64).reshape(-1, self.n)
        comp = np.array([c if c is not None else np.full(self.n, np.nan) for c in compute],
                        dtype=np.float64).reshape(-1, self.n)
        return {"times": rows, "compute": comp, "has_compute": has_compute,
                "load": list(self.log["load"]), "end": list(self.log["end"]),  # load None: primed
                "current": self.current.to_dict(), "decisions": list(self.decisions),
                "prior": {"kind": self.prior.kind, "slope": self.prior.slope,
                          "trace_load": self.prior.trace_load}}

    def restore(self, state: dict, scheme: SwitchingScheme) -> None:
        """Adopt a saved :meth:`state` and the scheme restored alongside it."""
        self.scheme = scheme
        prior = state["prior"]
        self.prior = LoadModel(prior["kind"], float(prior["slope"]), prior.get("trace_load"))
        self._reset_estimates()
        for times, comp, has, load, end in zip(state["times"], state["compute"], state["has_compute"],
                                                state["load"], state["end"]):
            times, comp = np.asarray(times, dtype=np.float64), np.asarray(comp, dtype=np.float64)
            self._log(times, comp if has else None, load, float(end))
            if load is None:  # a primed row of base times
                self._advance(times, float(end))
            else:
                self._estimate(times, comp if has else None, float(load), float(end))
        self.current = Candidate.from_dict(state["current"])
        self.decisions = list(state["decisions"])
