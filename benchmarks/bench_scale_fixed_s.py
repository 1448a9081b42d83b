"""Cyclic-code bookkeeping against n with the code's parameters held fixed (s = λ = 15), to
separate growth in n from growth in s (``gcode bench scale`` scales s with n, as the paper does).

    python benchmarks/bench_scale_fixed_s.py [--out benchmarks/results] [--rounds 25]

Writes bench_scale_fixed_s.{json,md,png}: µs per worker-round (median round), the same
measurement as ``gcode bench scale``'s bookkeeping column.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from gcode.bench.scale import PAPER_LOAD_SLOPE, _bookkeeping, synthetic_trace
from gcode.sim.load_model import LoadModel

SCHEMES = {
    "gc cyclic (s=15)": ("gc", {"s": 15, "gc_code": "cyclic"}),
    "srsgc cyclic (2,3,15)": ("srsgc", {"B": 2, "W": 3, "lam": 15, "gc_code": "cyclic"}),
    "msgc cyclic (1,2,15)": ("msgc", {"B": 1, "W": 2, "lam": 15, "gc_code": "cyclic"}),
}
NS = (256, 1024, 4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    loads = LoadModel("additive", PAPER_LOAD_SLOPE)
    trace = synthetic_trace(args.rounds + 5, max(NS), seed=0)
    rows = {}
    for label, (name, params) in SCHEMES.items():
        rows[label] = {}
        for n in NS:
            with threadpool_limits(limits=1, user_api="blas"):  # as the live runtime runs
                _setup, steady = _bookkeeping(name, params, n, trace, loads, args.rounds)
            rows[label][str(n)] = float(np.median(steady) / n * 1e6)
            print(f"{label} n={n}: {rows[label][str(n)]:.2f} µs per worker-round", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"ns": list(NS), "rounds": args.rounds, "us_per_worker_round": rows}
    (out / "bench_scale_fixed_s.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["Cyclic-code bookkeeping with fixed code parameters, µs per worker-round (median "
             f"of {args.rounds - 1} rounds; flat = linear in n):", "",
             "| scheme | " + " | ".join(f"n={n}" for n in NS) + " |",
             "|---|" + "---|" * len(NS)]
    lines += [f"| {label} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |"
              for label, row in rows.items()]
    (out / "bench_scale_fixed_s.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, row in rows.items():
        ax.plot(NS, list(row.values()), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("workers n")
    ax.set_ylabel("µs per worker-round")
    ax.set_title("cyclic bookkeeping, fixed s", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "bench_scale_fixed_s.png", dpi=110)


if __name__ == "__main__":
    main()
