"""Hindsight grid search over the paper's parameter space, with the vectorized simulator.

Grid for n workers, J jobs and a delay budget D = min(max_delay, R − J) on a trace of R rounds:
  * GC: s = 1 … n−1 (gcode's s counts tolerated stragglers, so this covers the authors' 1 … n);
  * SR-SGC: λ = 1 … n, B = 1 … D, W ∈ {B+1, 2B+1, …} with W < J and W ≤ B·(n−1)+1 (past that,
    s = ⌈λ/(⌊(W−1)/B⌋+1)⌉ cannot fall further, only the model gets stricter);
  * M-SGC: λ = 1 … n, 1 ≤ B < W, W−1+B ≤ D;
  * uncoded: no parameters.
The grid grows with n and D, never with the trace's length (D is capped by ``max_delay``, 4 by
default, as in the paper's 30-round setup). On the paper's setup (n=256, R=30, J=26) it is the
authors' grid, 14,080 settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..codes import srsgc_s
from ..codes.loads import gc_load, msgc_load, srsgc_load, uncoded_load
from .fast import TraceView, bursty_runtimes, s_per_round_runtimes
from .load_model import LoadModel
from .simulator import worker_times

SCHEMES = ("uncoded", "gc", "srsgc", "msgc")


@dataclass(frozen=True)
class TuneSettings:
    jobs: int
    mu: float = 1.0
    load_slope: float = 2.2013
    time_scale: float = 1.0
    gc_code: str = "cyclic"
    load_model: str = "additive"       # or "proportional" (see gcode.sim.load_model)
    trace_load: float | None = None    # proportional: the trace's load (None: 1/n)
    max_delay: int = 4                 # cap on the delay budget D

    def __post_init__(self):
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got jobs={self.jobs}")
        if not self.mu > 0:
            raise ValueError(f"mu must be > 0, got mu={self.mu}")
        if not self.time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got time_scale={self.time_scale}")
        if self.max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got max_delay={self.max_delay}")
        _ = self.loads  # validates the load model's fields

    @property
    def loads(self) -> LoadModel:
        return LoadModel(self.load_model, self.load_slope, self.trace_load)


@dataclass
class GridResult:
    """Every evaluated setting of one scheme: params (list of dicts), runtimes and waits."""

    scheme: str
    params: list[dict]
    runtimes: np.ndarray
    waits: np.ndarray
    loads: np.ndarray

    def best(self) -> dict:
        i = int(np.argmin(self.runtimes))
        return {"params": self.params[i], "runtime_s": float(self.runtimes[i]),
                "waits": int(self.waits[i]), "load": float(self.loads[i])}


def bursty_pairs(name: str, n: int, jobs: int, budget: int) -> list[tuple[int, int]]:
    """The (B, W) pairs of scheme ``name`` ('srsgc' or 'msgc') in the grid (module docstring)."""
    if name == "srsgc":
        return [(B, W) for B in range(1, budget + 1) for W in range(B + 1, min(jobs, B * (n - 1) + 2), B)]
    return [(B, W) for W in range(2, budget + 2) for B in range(1, W) if W - 1 + B <= budget]


def delay_budget(rounds: int, settings: TuneSettings) -> int:
    budget = rounds - settings.jobs
    if budget < 0:
        raise ValueError(f"jobs={settings.jobs} exceeds the trace's {rounds} rounds")
    return min(budget, settings.max_delay)


def grid_size(rounds: int, n: int, settings: TuneSettings, schemes: tuple[str, ...] = SCHEMES) -> int:
    """How many settings :func:`grid_search` evaluates (the progress bar's total)."""
    budget = delay_budget(rounds, settings)
    size = ("uncoded" in schemes) + (n - 1) * ("gc" in schemes)
    for name in ("srsgc", "msgc"):
        if name in schemes:
            size += n * len(bursty_pairs(name, n, settings.jobs, budget))
    return size


def grid_search(trace: np.ndarray, settings: TuneSettings, n: int | None = None,
                schemes: tuple[str, ...] = SCHEMES,
                progress: Callable[[int], None] | None = None) -> dict[str, GridResult]:
    """Runtime of every grid point of every scheme on ``trace`` (rounds × workers).

    ``progress(k)`` is called as k more settings are done (:func:`grid_size` in all)."""
    trace = np.asarray(trace, dtype=np.float64)
    rounds_available = trace.shape[0]
    n = trace.shape[1] if n is None else n
    budget = delay_budget(rounds_available, settings)
    view = TraceView(worker_times(trace, n, rounds_available, 0.0, 0.0, settings.time_scale),
                     settings.mu)
    model, jobs, code = settings.loads, settings.jobs, settings.gc_code
    step = progress or (lambda k: None)
    results: dict[str, GridResult] = {}
    if "uncoded" in schemes:
        runtime, waits = s_per_round_runtimes(view, np.array([0]), np.array([uncoded_load(n)]), model, jobs)
        results["uncoded"] = GridResult("uncoded", [{}], runtime, waits, np.array([uncoded_load(n)]))
        step(1)
    if "gc" in schemes and n > 1:
        s = np.arange(1, n)
        loads = np.array([gc_load(n, int(v), code) for v in s])
        runtime, waits = s_per_round_runtimes(view, s, loads, model, jobs)
        results["gc"] = GridResult("gc", [{"s": int(v), "gc_code": code} for v in s], runtime, waits, loads)
        step(len(s))
    lams = np.arange(1, n + 1)
    load_of = {"srsgc": srsgc_load, "msgc": msgc_load}
    delay_of = {"srsgc": lambda B, W: B, "msgc": lambda B, W: W - 2 + B}
    for name in ("srsgc", "msgc"):
        if name not in schemes:
            continue
        params, runtimes, waits_all, loads_all = [], [], [], []
        for B, W in bursty_pairs(name, n, jobs, budget):
            loads = np.array([load_of[name](n, B, W, int(lam), code) for lam in lams])
            s = np.array([srsgc_s(B, W, int(lam)) for lam in lams]) if name == "srsgc" else None
            runtime, waits = bursty_runtimes(view, B, W, lams, loads, model,
                                             jobs + delay_of[name](B, W), srsgc_s=s, jobs=jobs)
            params += [{"B": B, "W": W, "lam": int(lam), "gc_code": code} for lam in lams]
            runtimes.append(runtime)
            waits_all.append(waits)
            loads_all.append(loads)
            step(len(lams))
        if params:
            results[name] = GridResult(name, params, np.concatenate(runtimes),
                                       np.concatenate(waits_all), np.concatenate(loads_all))
    return results


def tune(trace: np.ndarray, settings: TuneSettings, n: int | None = None,
         schemes: tuple[str, ...] = SCHEMES,
         progress: Callable[[int], None] | None = None) -> dict:
    """The best parameters and runtime per scheme, plus ``elapsed_s`` of the search."""
    start = time.perf_counter()
    grids = grid_search(trace, settings, n, schemes, progress)
    best = {name: grid.best() for name, grid in grids.items()}
    evaluated = int(sum(len(grid.params) for grid in grids.values()))
    return {"best": best, "evaluated": evaluated, "elapsed_s": time.perf_counter() - start}
