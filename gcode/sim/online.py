"""``--scheme auto``: an online tuner that picks the scheme, its parameters and μ as it goes.

It is a round-ending :class:`Policy` bound to a :class:`SwitchingScheme`:
  * it ends rounds with the partial-wait fallback (or the paper's) at the current μ;
  * it observes every finished round's per-worker times as a live coordinator sees them (a
    worker cut off is only known to be slower than the round's end) and removes the load term
    of its :class:`LoadModel` to recover the base times (what a worker would take at zero load,
    or at the trace's load for the proportional model);
  * every ``every`` rounds it replays the last ``window`` rounds of base times through every
    candidate (uncoded; GC s = 1 … n−1; SR-SGC and M-SGC (B, W, λ) with delay ≤ max_delay; each
    at every μ in ``mus``) with the vectorized simulator, and switches at the next job boundary
    when the best candidate's mean round time beats the current one's by ``margin``.
Only past rounds are ever used, so every decision is out of sample. Switching follows
:mod:`gcode.codes.switching` and never mis-decodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from ..codes import make_scheme, srsgc_s
from ..codes.loads import gc_load, msgc_load, srsgc_load
from ..codes.switching import SwitchingScheme
from .fast import TraceView, bursty_runtimes, s_per_round_runtimes
from .fast_b1 import bursty_runtimes_b1
from .load_model import LoadModel
from .policy import EarliestPolicy, PaperPolicy, PartialWaitPolicy, Policy


@dataclass(frozen=True)
class OnlineConfig:
    # defaults: chosen by `gcode bench auto` on the load-level traces only (never on the public
    # traces the auto scheme is evaluated on)
    window: int = 8
    every: int = 2
    margin: float = 0.0
    mus: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # 0: the earliest policy (no cut);
    #                                                       dropped without the partial fallback
    max_delay: int = 1
    partial: bool = True
    start_scheme: str = "gc"
    start_s_fraction: float = 1 / 16  # GC with s = ⌈n·fraction⌉ until the first decision
    start_mu: float = 1.0
    gc_code: str = "fr"  # exact in fp32, no per-straggler-set solve
    min_history: int = 2  # first decision once this many rounds are seen (window fills later)
    grid_points: int = 64  # s and λ values tried, spread geometrically over 1 … n

    def __post_init__(self):
        if self.window < 2:
            raise ValueError(f"window must be >= 2 rounds, got {self.window}")
        if not 1 <= self.min_history <= self.window:
            raise ValueError(f"min_history must be in [1, window], got {self.min_history}")
        if self.grid_points < 2:
            raise ValueError(f"grid_points must be >= 2, got {self.grid_points}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")
        if not self.mus or any(not mu >= 0 for mu in self.mus):
            raise ValueError(f"mus must be a non-empty tuple of values >= 0, got {self.mus}")
        if not self.partial:  # μ = 0 is the earliest policy, a partial-fallback policy
            object.__setattr__(self, "mus", tuple(mu for mu in self.mus if mu > 0))
            if not self.mus:
                raise ValueError("mus: without the partial fallback it needs a value > 0 "
                                 "(0, the earliest policy, waits partially by definition)")
        if self.max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {self.max_delay}")


@dataclass(frozen=True)
class Candidate:
    scheme: str
    params: dict = field(hash=False)
    mu: float

    def key(self) -> tuple:
        return (self.scheme, tuple(sorted(self.params.items())), self.mu)


@dataclass(frozen=True)
class CandidateGrid:
    """The candidates of n workers under ``cfg``, fixed for a run: per block the settings'
    parameters and loads, and every candidate in the order of :func:`evaluate_candidates`."""

    s_block: tuple[np.ndarray, np.ndarray]  # (s with 0 for uncoded, loads)
    bursty: tuple[tuple[str, int, int, np.ndarray, np.ndarray, np.ndarray], ...]  # name, B, W, λ, loads, SR-SGC s
    candidates: tuple[Candidate, ...]
    index: dict  # Candidate.key() -> position


@lru_cache(maxsize=16)
def candidate_grid(n: int, cfg: OnlineConfig) -> CandidateGrid:
    lams = np.unique(np.round(np.geomspace(1, n, cfg.grid_points)).astype(np.int64))
    code = cfg.gc_code
    s = np.concatenate([[0], lams[lams < n]])
    loads = np.array([gc_load(n, int(v), code) for v in s])
    loads[0] = 1.0 / n  # s = 0 is uncoded
    params: list[tuple[str | None, list[dict]]] = [
        (None, [{}] + [{"s": int(v), "gc_code": code} for v in s[1:]])]
    bursty = []
    for name, load_of, pairs in (
            ("msgc", msgc_load, [(B, W) for W in range(2, cfg.max_delay + 3)
                                 for B in range(1, W) if W - 2 + B <= cfg.max_delay]),
            ("srsgc", srsgc_load, [(B, W) for B in range(1, cfg.max_delay + 1)
                                   for W in range(B + 1, 3 * B + 2, B)])):
        for B, W in pairs:
            valid = lams[[name != "srsgc" or lam < n for lam in lams]]
            bursty.append((name, B, W, valid,
                           np.array([load_of(n, B, W, int(lam), code) for lam in valid]),
                           np.array([srsgc_s(B, W, int(lam)) for lam in valid] if name == "srsgc" else [])))
            params.append((name, [{"B": B, "W": W, "lam": int(lam), "gc_code": code} for lam in valid]))
    candidates = tuple(Candidate(name or ("gc" if p else "uncoded"), p, mu)
                       for mu in cfg.mus for name, block in params for p in block)
    return CandidateGrid((s, loads), tuple(bursty), candidates,
                         {c.key(): i for i, c in enumerate(candidates)})


def evaluate_candidates(base_times: np.ndarray, n: int, slope: float | LoadModel, cfg: OnlineConfig,
                        view: TraceView | None = None) -> tuple[tuple[Candidate, ...], np.ndarray]:
    """Mean round time of every candidate over ``base_times`` (rounds × n, the base times of
    ``slope``'s load model: zero-load times for the additive one). ``view``: a
    :class:`TraceView` of ``base_times`` already built.

    Candidates are ordered by μ, then uncoded and GC, then M-SGC and SR-SGC per (B, W) over λ;
    each block is evaluated for every μ in one vectorized call."""
    rounds = base_times.shape[0]
    view = TraceView(base_times, cfg.mus[0]) if view is None else view
    mus = np.asarray(cfg.mus, dtype=np.float64)
    grid = candidate_grid(n, cfg)

    def over_mus(run, *per_setting):
        """Evaluate P settings at every μ at once; returns mean round times (len(mus), P)."""
        tiled = [np.tile(np.asarray(x), len(mus)) for x in per_setting]
        total = run(*tiled, np.repeat(mus, len(per_setting[0])))
        return (total / rounds).reshape(len(mus), -1)

    blocks = [over_mus(lambda s_, loads_, mus_: s_per_round_runtimes(
        view, s_, loads_, slope, rounds, cfg.partial, mus_)[0], *grid.s_block)]
    for name, B, W, valid, loads, s in grid.bursty:
        blocks.append(over_mus(lambda l_, loads_, s_, mus_, B=B, W=W: window_replay(
            view, B, W, l_, loads_, slope, rounds, cfg.partial, s_ if len(s_) else None, mus_),
            valid, loads, s))
    return grid.candidates, np.concatenate([means[m] for m in range(len(mus)) for means in blocks])


def window_replay(view: TraceView, B: int, W: int, lams, loads, slope, rounds: int, partial: bool,
                  srsgc_s, mus) -> np.ndarray:
    """Total time of (B, W, λ) settings over a window with a job every round (SR-SGC when
    ``srsgc_s`` is given); B = 1 takes the path with no bitsets (:mod:`gcode.sim.fast_b1`)."""
    if B == 1:
        return bursty_runtimes_b1(view, W, lams, loads, slope, rounds, partial, srsgc_s, mus)[0]
    return bursty_runtimes(view, B, W, lams, loads, slope, rounds, partial, srsgc_s=srsgc_s,
                           mus=mus)[0]


def window_statistics(base_times: np.ndarray, mu: float) -> dict:
    """Straggler statistics of a window of zero-load times (rounds × n), at threshold μ.

    The tuner does not decide from these summaries: it replays the window itself through every
    candidate, which accounts for them exactly. They are logged with each decision so that a
    person can see what the tuner saw.
    """
    stragglers = base_times > (1 + mu) * base_times.min(axis=1, keepdims=True)
    longest = 0
    run = np.zeros(base_times.shape[1], dtype=np.int64)
    for row in stragglers:
        run = np.where(row, run + 1, 0)
        longest = max(longest, int(run.max()))
    return {"rounds": int(base_times.shape[0]),
            "stragglers_per_round": float(stragglers.sum(axis=1).mean()),
            "distinct_stragglers": int(stragglers.any(axis=0).sum()),
            "longest_burst": longest,
            "tail_ratio": float(np.median(base_times.max(axis=1) / base_times.min(axis=1)))}


class OnlineTuner(Policy):
    """The auto scheme's policy and brain; ``self.scheme`` is the scheme to drive."""

    name = "auto"

    def __init__(self, n: int, jobs: int | None, load_slope: float | LoadModel,
                 cfg: OnlineConfig = OnlineConfig()):
        self.n, self.cfg, self.loads = n, cfg, LoadModel.of(load_slope)
        s = max(1, int(np.ceil(n * cfg.start_s_fraction))) if n > 1 else 0
        params = {"s": min(s, n - 1), "gc_code": cfg.gc_code} if cfg.start_scheme == "gc" else {}
        first = make_scheme(cfg.start_scheme, n=n, jobs=jobs, **params)
        self.current = Candidate(cfg.start_scheme, params, cfg.start_mu)
        self.scheme = SwitchingScheme(n, jobs, first)
        self.base_times: list[np.ndarray] = []
        self.decisions: list[dict] = []
        # per row of base_times, and pair of rows, what a decision's replay needs of them
        self._orders: dict[int, np.ndarray] = {}  # its stable argsort
        self._overlaps: dict[tuple[int, int], np.ndarray] = {}  # TraceView.first_overlap

    @property
    def load_slope(self) -> float:
        """The additive model's seconds per unit load (a live run may measure and set it)."""
        return self.loads.slope

    @load_slope.setter
    def load_slope(self, slope: float) -> None:
        self.loads = replace(self.loads, slope=float(slope))

    @property
    def mu(self) -> float:
        return self.current.mu

    @property
    def partial_fallback(self) -> bool:
        return self.cfg.partial

    def state(self) -> dict:
        """The tuner's learned state (JSON-able but for the (rounds, n) array ``base_times``)."""
        return {"base_times": np.array(self.base_times, dtype=np.float64).reshape(-1, self.n),
                "current": {"scheme": self.current.scheme, "params": dict(self.current.params),
                            "mu": self.current.mu},
                "decisions": list(self.decisions), "load_slope": float(self.load_slope),
                "load_model": self.loads.kind, "trace_load": self.loads.trace_load}

    def restore(self, state: dict, scheme: SwitchingScheme) -> None:
        """Adopt a saved :meth:`state` and the scheme restored alongside it."""
        self.scheme = scheme
        self.base_times = [np.array(row, dtype=np.float64) for row in state["base_times"]]
        self._orders, self._overlaps = {}, {}
        cur = state["current"]
        self.current = Candidate(cur["scheme"], dict(cur["params"]), float(cur["mu"]))
        self.decisions = list(state["decisions"])
        self.loads = LoadModel(state.get("load_model", "additive"), float(state["load_slope"]),
                               state.get("trace_load"))

    def _policy(self) -> Policy:
        """μ = 0 is the earliest policy: the vectorized simulator at μ = 0 with the partial
        fallback ends every round exactly where it does (tests/test_earliest.py)."""
        if self.mu == 0:
            return EarliestPolicy()
        return PartialWaitPolicy(self.mu) if self.cfg.partial else PaperPolicy(self.mu)

    @property
    def ends_when_conforming(self) -> bool:
        return self.mu == 0

    def deadline(self, fastest: float) -> float:
        return self._policy().deadline(fastest)

    def resolve(self, times, conforms):
        return self._policy().resolve(times, conforms)

    def prime(self, base_times: np.ndarray) -> None:
        """Seed the tuner with zero-load times of rounds before this run (e.g. a probe trace) and
        decide at once, before round 0."""
        self.base_times += [np.asarray(row, dtype=np.float64) for row in np.atleast_2d(base_times)]
        if len(self.base_times) >= self.cfg.min_history:
            self._decide(len(self.scheme.history))

    def observe(self, r: int, times: np.ndarray, load: float, end: float) -> None:
        """Keep the round's zero-load times. A worker cut off at ``end`` (NaN) is only known to
        take longer; it is kept at the smallest value above ``end``, so that it still straggles
        under the round's own cut and the replay never assumes it was faster than it was."""
        times = np.asarray(times, dtype=np.float64)
        times = np.where(np.isnan(times), np.nextafter(float(end), np.inf), times)
        self.base_times.append(self.loads.base(times, load))
        next_round = r + 1
        if len(self.base_times) >= self.cfg.min_history and next_round % self.cfg.every == 0:
            self._decide(next_round)

    def _decide(self, next_round: int) -> None:
        """Re-tune on the recent window and switch at ``next_round`` if clearly better."""
        if not self.scheme.can_switch(next_round):
            return
        first = max(0, len(self.base_times) - self.cfg.window)
        window = np.array(self.base_times[first:])
        self._orders = {i: self._orders.get(i) for i in range(first, len(self.base_times))}
        for i, order in self._orders.items():  # each round is sorted once, not once per decision
            if order is None:
                self._orders[i] = np.argsort(self.base_times[i], kind="stable")
        self._overlaps = {key: v for key, v in self._overlaps.items() if key[0] >= first}
        view = TraceView(window, self.cfg.mus[0], np.array(list(self._orders.values())),
                         self._overlaps, first)
        candidates, means = evaluate_candidates(window, self.n, self.loads, self.cfg, view)
        best = int(np.argmin(means))
        position = candidate_grid(self.n, self.cfg).index.get(self.current.key())
        current_mean = means[position] if position is not None else np.inf
        decision = {"round": next_round, "best": candidates[best].scheme,
                    "best_params": candidates[best].params, "best_mu": candidates[best].mu,
                    "best_mean_s": float(means[best]), "current_mean_s": float(current_mean),
                    "window": window_statistics(window, self.current.mu), "switched": False}
        if means[best] < current_mean * (1 - self.cfg.margin):
            choice = candidates[best]
            if (choice.scheme, choice.params) != (self.current.scheme, self.current.params):
                self.scheme.switch(next_round, lambda jobs: make_scheme(
                    choice.scheme, n=self.n, jobs=jobs, **choice.params))
            self.current = choice
            decision["switched"] = True
        self.decisions.append(decision)
