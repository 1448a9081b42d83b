"""Time ``gcode tune`` (the vectorized full-grid search) against a straightforward reference.

The reference evaluates each grid point with its own per-round loop over numpy arrays of n
workers, like the authors' replay classes. Both must return the same runtimes; the bench checks
that before it reports speed.

    python benchmarks/bench_tune.py [--trace PATH] [--jobs J] [--repeats K] [--out results]

Writes ``bench_tune.json`` and ``bench_tune.png`` under --out and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from gcode.sim.tune import TuneSettings, grid_search
from gcode.stragglers import load_trace

DEFAULT_TRACE = Path(__file__).resolve().parents[2] / "shared" / "traces" / "lambda-cnn-w256-r30-canada.csv"


def reference_runtime(times: np.ndarray, rounds: int, mu: float, model: str, params: dict) -> float:
    """One grid point, one round at a time (the straightforward loop the bench compares to)."""
    n = times.shape[1]
    history: list[np.ndarray] = []
    total = 0.0
    for r in range(rounds):
        t = times[r]
        cut = t.min() * (1 + mu)
        stragglers = t > cut
        if model == "s_per_round":
            conform = stragglers.sum() <= params["s"]
        else:
            B, W, lam = params["B"], params["W"], params["lam"]
            window = history[max(0, r - W + 1): r]
            seen = np.any(window, axis=0) if window else np.zeros(n, bool)
            conform = (seen | stragglers).sum() <= lam
            early = history[max(0, r - W + 1): max(0, r - B + 1)]
            if conform and early:
                conform = not np.any(np.any(early, axis=0) & stragglers)
        history.append(stragglers if conform else np.zeros(n, bool))
        total += min(cut, t.max()) if conform else t.max()
    return total


def run_reference(trace: np.ndarray, settings: TuneSettings, grids) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = []
    delay = {"uncoded": lambda p: 0, "gc": lambda p: 0, "srsgc": lambda p: p["B"],
             "msgc": lambda p: p["W"] - 2 + p["B"]}
    for name, grid in grids.items():
        for params, load in zip(grid.params, grid.loads):
            times = trace * settings.time_scale + load * settings.load_slope
            model = "s_per_round" if name in ("uncoded", "gc") else "bursty"
            p = {"s": params.get("s", 0), **params}
            out.append(reference_runtime(times, settings.jobs + delay[name](params), settings.mu, model, p))
    return time.perf_counter() - start, np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", default=str(DEFAULT_TRACE))
    parser.add_argument("--jobs", type=int, help="default: trace rounds - 4")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the fast search")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    trace = load_trace(args.trace)
    settings = TuneSettings(jobs=args.jobs or trace.shape[0] - 4)

    grid_search(trace, settings)  # warm-up (imports, allocations)
    fast_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        grids = grid_search(trace, settings)
        fast_times.append(time.perf_counter() - start)
    fast_runtimes = np.concatenate([g.runtimes for g in grids.values()])
    ref_seconds, ref_runtimes = run_reference(trace, settings, grids)
    agree = bool(np.allclose(fast_runtimes, ref_runtimes, rtol=1e-12, atol=0))
    settings_count = int(fast_runtimes.size)
    fast = float(np.median(fast_times))
    result = {
        "trace": Path(args.trace).name, "jobs": settings.jobs, "grid_settings": settings_count,
        "fast_s_median": fast, "fast_s_all": fast_times, "reference_s": ref_seconds,
        "speedup": ref_seconds / fast, "results_agree": agree,
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "date": date.today().isoformat(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_tune.json").write_text(json.dumps(result, indent=2))
    print(f"full grid on {result['trace']} ({settings_count} settings, jobs={settings.jobs})")
    print(f"{'method':34} {'seconds':>9} {'settings/s':>11}")
    print(f"{'vectorized bitset search (median)':34} {fast:9.3f} {settings_count / fast:11.0f}")
    print(f"{'per-round reference loop':34} {ref_seconds:9.3f} {settings_count / ref_seconds:11.0f}")
    print(f"speedup {result['speedup']:.1f}x; identical runtimes: {agree}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(["vectorized", "reference loop"], [fast, ref_seconds], color=["tab:blue", "tab:gray"])
    ax.set_ylabel("seconds for the full grid")
    ax.set_title(f"gcode tune, {settings_count} settings")
    fig.tight_layout()
    fig.savefig(out / "bench_tune.png", dpi=120)
    if not agree:
        raise SystemExit("vectorized and reference runtimes differ")


if __name__ == "__main__":
    main()
