"""``gcode bench decode``: decode latency and throughput against n, d and s.

For each (n, d, s) it decodes a GC job from n−s fp32 results of d values with real decoding
coefficients (cyclic code, fp64 accumulation) and measures
  * the batch decode (``weighted_sum``: blocked fp64, reads each result once),
  * the memory-bandwidth reference: a plain numpy ``coeffs @ stacked`` over the same fp32 data
    (a gemv; stacking is done beforehand and not timed),
  * the streaming critical path: the work left after the last result arrives when results are
    folded as they come (one fp64 axpy), and
  * the coefficient solve for a new straggler set (cached afterwards), with one BLAS thread as
    the live runtime uses.
Throughput is bytes of results read per second. Settings whose results would exceed
``max_bytes`` of memory are skipped and listed.
"""

from __future__ import annotations

import time

import numpy as np

from ..codes import make_gc_code
from ..paths import save_figure
from ..runtime.loop.decode import axpy64, weighted_sum


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_one(n: int, d: int, s: int, repeats: int, rng: np.random.Generator) -> dict:
    code = make_gc_code("cyclic", n, s) if s > 0 else make_gc_code("fr", n, 0)
    finished = frozenset(rng.choice(n, size=n - s, replace=False).tolist())
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):  # as in the live runtime (see run.py)
        start = time.perf_counter()
        coefficients = code.decode_coefficients(finished)
        solve_s = time.perf_counter() - start
    workers = sorted(coefficients)
    coefs = np.array([coefficients[w] for w in workers])
    stacked = rng.standard_normal((len(workers), d), dtype=np.float32)
    arrays = list(stacked)
    out = np.zeros(d)
    batch_s = _best_of(lambda: weighted_sum(arrays, coefs, out=out.fill(0.0) or out), repeats)
    coefs32 = coefs.astype(np.float32)
    gemv_s = _best_of(lambda: coefs32 @ stacked, repeats)
    scratch = np.empty(d)
    axpy_s = _best_of(lambda: axpy64(out, arrays[0], 0.5, scratch), repeats)
    exact = coefs @ stacked.astype(np.float64)
    rel_error = float(np.linalg.norm(weighted_sum(arrays, coefs) - exact) / np.linalg.norm(exact))
    read = stacked.nbytes
    return {"n": n, "d": d, "s": s, "results": len(workers), "bytes_read": read,
            "batch_ms": batch_s * 1e3, "batch_GBps": read / batch_s / 1e9,
            "numpy_gemv_ms": gemv_s * 1e3, "numpy_gemv_GBps": read / gemv_s / 1e9,
            "streaming_critical_path_ms": axpy_s * 1e3, "coefficient_solve_ms": solve_s * 1e3,
            "batch_rel_error_vs_fp64": rel_error}


def run_decode_bench(ns=(16, 64, 256), ds=(10_000, 100_000, 1_000_000, 10_000_000),
                     s_fractions=(0.0, 0.1), repeats: int = 3, max_bytes: int = 2 << 30,
                     seed: int = 0, progress=None) -> dict:
    rng = np.random.default_rng(seed)
    rows, skipped = [], []
    for n in ns:
        for d in ds:
            for fraction in s_fractions:
                s = round(fraction * n)
                if n * d * 4 > max_bytes:
                    skipped.append({"n": n, "d": d, "s": s, "why": f"{n * d * 4 / 2**30:.1f} GiB of results"})
                else:
                    rows.append(bench_one(n, d, s, repeats, rng))
                if progress is not None:
                    progress(1)
    return {"rows": rows, "skipped": skipped, "repeats": repeats}


def markdown_table(result: dict) -> str:
    lines = ["| n | d | s | results | batch ms | batch GB/s | numpy gemv ms | gemv GB/s | "
             "streaming critical path ms | coefficient solve ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['n']} | {r['d']:.0e} | {r['s']} | {r['results']} | {r['batch_ms']:.2f} | "
                     f"{r['batch_GBps']:.1f} | {r['numpy_gemv_ms']:.2f} | {r['numpy_gemv_GBps']:.1f} | "
                     f"{r['streaming_critical_path_ms']:.2f} | {r['coefficient_solve_ms']:.1f} |")
    if result["skipped"]:
        lines.append("")
        lines.append("Skipped (memory): "
                     + ", ".join(f"n={r['n']} d={r['d']:.0e}" for r in result["skipped"]))
    return "\n".join(lines)


def plot(result: dict, out_dir) -> list:
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for n in sorted({r["n"] for r in result["rows"]}):
        rows = sorted((r for r in result["rows"] if r["n"] == n and r["s"] == 0), key=lambda r: r["d"])
        if not rows:
            continue
        ds = [r["d"] for r in rows]
        axes[0].loglog(ds, [r["batch_ms"] for r in rows], "o-", label=f"batch decode n={n}")
        axes[0].loglog(ds, [r["numpy_gemv_ms"] for r in rows], "x--", label=f"numpy gemv n={n}")
        axes[1].semilogx(ds, [r["batch_GBps"] for r in rows], "o-", label=f"batch n={n}")
        axes[1].semilogx(ds, [r["numpy_gemv_GBps"] for r in rows], "x--", label=f"gemv n={n}")
    ds = sorted({r["d"] for r in result["rows"]})
    crit = [min(r["streaming_critical_path_ms"] for r in result["rows"] if r["d"] == d) for d in ds]
    axes[0].loglog(ds, crit, "k^-", label="streaming critical path")
    axes[0].set_xlabel("d (values per result)")
    axes[0].set_ylabel("ms")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("d (values per result)")
    axes[1].set_ylabel("GB/s of results read")
    axes[1].legend(fontsize=7)
    fig.suptitle("decode latency and throughput (s = 0)")
    fig.tight_layout()
    path = Path(out_dir) / "bench_decode.png"
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return [path]
