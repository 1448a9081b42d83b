"""``gcode bench sim``: simulator and tuner speed against a straightforward per-round loop.

The reference evaluates each grid point with its own per-round loop over numpy arrays of n
workers, like the authors' replay classes. The bench checks that both give identical runtimes
before it reports any speed.
"""

from __future__ import annotations

import time

import numpy as np

from ..codes import srsgc_s
from ..paths import save_figure
from ..sim.tune import TuneSettings, grid_search

_DELAY = {"uncoded": lambda p: 0, "gc": lambda p: 0, "srsgc": lambda p: p["B"],
          "msgc": lambda p: p["W"] - 2 + p["B"]}


def _bursty_conforms(history: list[np.ndarray], stragglers: np.ndarray, B: int, W: int, lam: int) -> bool:
    r = len(history)
    window = history[max(0, r - W + 1): r]
    seen = np.any(window, axis=0) if window else np.zeros_like(stragglers)
    if (seen | stragglers).sum() > lam:
        return False
    early = history[max(0, r - W + 1): max(0, r - B + 1)]
    return not (early and np.any(np.any(early, axis=0) & stragglers))


def reference_runtime(times: np.ndarray, jobs: int, mu: float, name: str, params: dict) -> float:
    """One grid point, one round at a time, like the authors' replay classes. ``params`` has s,
    or B, W and lam. SR-SGC tracks who misses each job and who repeats; a round in which every
    worker ran its own job with at most s stragglers is not counted later, and a tail round with
    nothing to run is free (so is M-SGC's with λ = n once every D1 chunk is in)."""
    n = times.shape[1]
    rounds = jobs + _DELAY[name](params)
    none = np.zeros(n, bool)
    history: list[np.ndarray] = []
    missing: dict[int, np.ndarray] = {}
    d1_arrivals = np.zeros(n, dtype=np.int64)
    s = srsgc_s(params["B"], params["W"], params["lam"]) if name == "srsgc" else params.get("s", 0)
    total = 0.0
    for r in range(rounds):
        repeaters = none
        if name == "srsgc" and r - params["B"] in missing:
            late = np.flatnonzero(missing.pop(r - params["B"]))
            repeaters = np.isin(np.arange(n), late[: max(0, len(late) - s)])
        idle = r >= jobs and (
            (name == "srsgc" and not repeaters.any())
            or (name == "msgc" and params["lam"] >= n and (d1_arrivals >= params["W"] - 1).all()))
        if idle:
            history.append(none)
            continue
        t = times[r]
        cut = t.min() * (1 + mu)
        stragglers = t > cut
        if name in ("uncoded", "gc"):
            conform = stragglers.sum() <= s
        else:
            conform = _bursty_conforms(history, stragglers, params["B"], params["W"], params["lam"])
        stragglers = stragglers if conform else none
        total += min(cut, t.max()) if conform else t.max()
        exempt = name == "srsgc" and r < jobs and not repeaters.any() and stragglers.sum() <= s
        history.append(none if exempt else stragglers)
        if name == "srsgc" and r < jobs:
            missing[r] = stragglers | repeaters
        if r >= jobs - 1:
            d1_arrivals += ~stragglers
    return total


def run_sim_bench(trace: np.ndarray, settings: TuneSettings, repeats: int = 5,
                  reference_fraction: float = 1.0) -> dict:
    """Time the vectorized grid search and the reference loop on the same grid."""
    grid_search(trace, settings)  # warm-up
    fast_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        grids = grid_search(trace, settings)
        fast_times.append(time.perf_counter() - start)
    points = [(name, params, load, runtime) for name, grid in grids.items()
              for params, load, runtime in zip(grid.params, grid.loads, grid.runtimes)]
    step = max(1, round(1 / reference_fraction))
    sample = points[::step]
    start = time.perf_counter()
    mismatches = 0
    worker_rounds = 0
    for name, params, load, runtime in sample:
        times = settings.loads.times(trace * settings.time_scale, load)
        ref = reference_runtime(times, settings.jobs, settings.mu, name, params)
        mismatches += not np.isclose(ref, runtime, rtol=1e-12, atol=0)
        worker_rounds += (settings.jobs + _DELAY[name](params)) * trace.shape[1]
    reference_s = (time.perf_counter() - start) * len(points) / len(sample)
    total_worker_rounds = worker_rounds * len(points) / len(sample)
    fast = float(np.median(fast_times))
    return {"grid_settings": len(points), "jobs": settings.jobs,
            "fast_s_median": fast, "fast_s_all": fast_times,
            "reference_s": reference_s, "reference_sampled_fraction": len(sample) / len(points),
            "speedup": reference_s / fast, "results_agree": mismatches == 0,
            "worker_rounds_per_s": {"fast": total_worker_rounds / fast,
                                    "reference": total_worker_rounds / reference_s}}


def markdown_table(result: dict, trace_name: str) -> str:
    wr = result["worker_rounds_per_s"]
    sampled = result["reference_sampled_fraction"]
    note = "" if sampled == 1 else f" (timed on {sampled:.0%} of the grid, scaled)"
    return "\n".join([
        f"Full hindsight grid on {trace_name}: {result['grid_settings']} settings, "
        f"{result['jobs']} jobs.", "",
        "| method | seconds | settings/s | simulated worker-rounds/s |", "|---|---|---|---|",
        f"| vectorized bitset search (median of {len(result['fast_s_all'])}) | "
        f"{result['fast_s_median']:.3f} | "
        f"{result['grid_settings'] / result['fast_s_median']:,.0f} | {wr['fast']:,.0f} |",
        f"| per-round reference loop{note} | {result['reference_s']:.3f} | "
        f"{result['grid_settings'] / result['reference_s']:,.0f} | {wr['reference']:,.0f} |", "",
        f"Speedup {result['speedup']:.1f}x; identical runtimes: {result['results_agree']}."])


def plot(result: dict, out_dir) -> list:
    import matplotlib
    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(["vectorized", "reference loop"], [result["fast_s_median"], result["reference_s"]],
           color=["tab:blue", "tab:gray"])
    ax.set_ylabel("seconds for the full grid")
    ax.set_yscale("log")
    ax.set_title(f"gcode tune: {result['grid_settings']} settings")
    fig.tight_layout()
    path = Path(out_dir) / "bench_sim.png"
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return [path]
