"""Coordinator overhead per live round, and decode time at n=256, d=1M.

Part 1 (live, Ray): n=8 worker actors, MLP, M-SGC and uncoded, policy 'all' (no injection).
Per round: plan (late absorption, plan(r), flatten + ray.put of the parameters), dispatch
(8 compute.remote calls), process (ray.get + validation + folding results), decode
(record + decode), step (optimizer), log; against the workers' mean compute time and the round's
wall time.

Part 2 (numpy, no Ray): decoding one job from n=256 results of d=1M fp32 values (1 GB read):
  - fp32 gemv ``coeffs @ stacked``: the memory-bandwidth floor (not fp64, not exact);
  - naive fp64 Python loop ``acc += c * a`` (temporaries);
  - gcode.runtime.loop.decode.weighted_sum: blocked fp64, each result read once (the batch path);
  - streaming: each result folded into the fp64 accumulator on arrival; the critical path is the
    fold of the last result plus ``Decoder.decode`` (which then only returns the accumulator);
  - the cached cyclic-code solve for one straggler set (n=256, s=27).

    python benchmarks/bench_overhead.py [--quick] [--json-out results/overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _median_ms(fn, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times), times


# ---- part 1: live overhead ----------------------------------------------------------------
def bench_live(jobs: int) -> list[dict]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from gcode.config import ClusterConfig, from_dict
    from gcode.runtime import train
    from gcode.runtime.cluster import start_local_ray, start_workers

    start_local_ray(num_cpus=os.cpu_count() or 2)
    pool = start_workers(ClusterConfig(workers=8, max_restarts=10))
    cases = [
        ("digits mlp h64", {"dataset": "digits", "model": "mlp", "batch_size": 512}),
        ("synthetic-784 mlp h256", {"dataset": "synthetic", "model": "mlp",
                                    "model_params": {"hidden": 256}, "num_samples": 4096,
                                    "dataset_params": {"num_features": 784}, "batch_size": 512}),
    ]
    schemes = [("msgc", {"name": "msgc", "B": 1, "W": 2, "lam": 3}), ("uncoded", {"name": "uncoded"})]
    rows = []
    try:
        for label, tr in cases:
            for sname, sc in schemes:
                cfg = from_dict({"scheme": {**sc, "jobs": jobs}, "cluster": {"workers": 8},
                                 "policy": {"name": "all"},
                                 "train": {**tr, "optimizer": "sgd", "lr": 0.1}})
                train(cfg, pool=pool)  # warm-up: actors adopt the context, caches fill
                res = train(cfg, pool=pool)
                t = res["timings_s_per_round"]
                round_ms = 1e3 * res["runtime_s"] / res["rounds"]
                rows.append({
                    "case": label, "scheme": sname, "num_params": res["num_params"],
                    "load": res["load"], "rounds": res["rounds"], "round_ms": round_ms,
                    "compute_ms": 1e3 * res["compute_s_mean"],
                    "overhead_ms": 1e3 * res["overhead_s_per_round"],
                    "plan_ms": 1e3 * t["plan"], "dispatch_ms": 1e3 * t["dispatch"],
                    "process_ms": 1e3 * (t["fetch"] + t["fold"]), "decode_ms": 1e3 * t["decode"],
                    "step_ms": 1e3 * t["step"], "log_ms": 1e3 * t["log"],
                    "overhead_share": res["overhead_s_per_round"] / (res["runtime_s"] / res["rounds"]),
                })
    finally:
        pool.kill()
        ray.shutdown()
    return rows


# ---- part 2: decode ------------------------------------------------------------------------
def bench_decode(n: int, d: int, repeat: int) -> dict:
    from gcode.codes import CyclicRepetitionCode, MiniTask, ResultKey
    from gcode.runtime.loop.decode import Decoder, weighted_sum

    rng = np.random.default_rng(0)
    stacked = rng.random((n, d), dtype=np.float32)
    stacked -= 0.5
    arrays = list(stacked)
    coefs = rng.standard_normal(n)
    coefs32 = coefs.astype(np.float32)
    gb = stacked.nbytes / 1e9
    out = {"n": n, "d": d, "bytes_read_gb": gb}

    ms, _ = _median_ms(lambda: coefs32 @ stacked, repeat)
    out["fp32_gemv_floor_ms"] = ms

    def naive():
        acc = np.zeros(d)
        for a, c in zip(arrays, coefs):
            acc += c * a
        return acc
    ms, _ = _median_ms(naive, max(1, repeat // 2))
    out["fp64_python_loop_ms"] = ms

    ms, _ = _median_ms(lambda: weighted_sum(arrays, coefs), repeat)
    out["fp64_blocked_weighted_sum_ms"] = ms
    out["fp64_blocked_gb_per_s"] = gb / (ms / 1e3)
    threads = min(os.cpu_count() or 1, 4)
    ms, _ = _median_ms(lambda: weighted_sum(arrays, coefs, threads=threads), repeat)
    out["fp64_blocked_threads"] = threads
    out["fp64_blocked_threaded_ms"] = ms
    ones = [1.0] * n
    ms, _ = _median_ms(lambda: weighted_sum(arrays, ones), repeat)
    out["fp64_blocked_sum_coef1_ms"] = ms

    # exactness of the fp64 path against a float64 reference
    ref = coefs @ stacked.astype(np.float64)
    got = weighted_sum(arrays, coefs)
    out["fp64_blocked_rel_error"] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    g32 = (coefs32 @ stacked).astype(np.float64)
    out["fp32_gemv_rel_error"] = float(np.linalg.norm(g32 - ref) / np.linalg.norm(ref))

    # streaming: fold each arrival; critical path = last fold + decode()
    folds, critical = [], []
    for _ in range(repeat):
        dec = Decoder(d, streaming=True)
        fold_times = []
        for w in range(n):
            task = MiniTask(0, 0, (w,), (1.0,))
            t = time.perf_counter()
            dec.add(ResultKey(w, 0, 0), task, arrays[w])
            dec.flush(min_pending=1)
            fold_times.append(time.perf_counter() - t)
        decoding = [(ResultKey(w, 0, 0), 1.0) for w in range(n)]
        t = time.perf_counter()
        grad = dec.decode(0, decoding)[0].numpy()
        decode_ms = 1e3 * (time.perf_counter() - t)
        folds.append(1e3 * statistics.median(fold_times))
        critical.append(1e3 * fold_times[-1] + decode_ms)
        assert dec.streamed == 1
    ref1 = stacked.sum(axis=0, dtype=np.float64)
    out["stream_rel_error"] = float(np.linalg.norm(grad - ref1) / np.linalg.norm(ref1))
    out["stream_fold_per_result_ms"] = statistics.median(folds)
    out["stream_critical_path_ms"] = statistics.median(critical)
    out["stream_total_fold_ms"] = statistics.median(folds) * n

    # the cyclic code's decode vector for a straggler set (QR solve, then cached per set), with
    # the process's default BLAS threads and with one BLAS thread (what train() uses)
    from threadpoolctl import threadpool_limits

    def solves(code):
        firsts, cached = [], []
        for _ in range(5):
            finished = frozenset(range(256)) - frozenset(rng.choice(256, 27, replace=False).tolist())
            t = time.perf_counter()
            code.decode_coefficients(finished)
            firsts.append(1e3 * (time.perf_counter() - t))
            t = time.perf_counter()
            code.decode_coefficients(finished)
            cached.append(1e3 * (time.perf_counter() - t))
        return statistics.median(firsts), statistics.median(cached)
    out["cyclic_solve_first_ms"], out["cyclic_solve_cached_ms"] = solves(
        CyclicRepetitionCode(256, 27))
    with threadpool_limits(limits=1, user_api="blas"):
        out["cyclic_solve_first_1blas_ms"], _ = solves(CyclicRepetitionCode(256, 27))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and repetitions")
    ap.add_argument("--skip-live", action="store_true", help="only the decode benchmark")
    ap.add_argument("--jobs", type=int, default=None, help="jobs per live run (default 60, quick 20)")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--d", type=int, default=1_000_000)
    ap.add_argument("--json-out", default="results/overhead.json")
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else 7
    jobs = args.jobs or (20 if args.quick else 60)

    result = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                          "platform": platform.platform(), "numpy": np.__version__,
                          "load_avg_1m": os.getloadavg()[0]}}
    if not args.skip_live:
        result["live"] = bench_live(jobs)
        print("Coordinator overhead per round, n=8 workers, policy 'all' (ms)")
        hdr = (f"{'case':24} {'scheme':8} {'params':>7} {'round':>7} {'compute':>8} {'ovh':>6} "
               f"{'plan':>6} {'disp':>6} {'proc':>6} {'decode':>6} {'step':>6} {'ovh%':>5}")
        print(hdr)
        for r in result["live"]:
            print(f"{r['case']:24} {r['scheme']:8} {r['num_params']:7d} {r['round_ms']:7.2f} "
                  f"{r['compute_ms']:8.2f} {r['overhead_ms']:6.2f} {r['plan_ms']:6.2f} "
                  f"{r['dispatch_ms']:6.2f} {r['process_ms']:6.2f} {r['decode_ms']:6.3f} "
                  f"{r['step_ms']:6.2f} {100 * r['overhead_share']:5.1f}")
        print("  compute = mean worker compute per round; ovh = plan+dispatch+process+decode+step+log")
    dec = bench_decode(args.n, args.d, repeat)
    result["decode"] = dec
    print(f"\nDecode of one job: n={dec['n']} results x d={dec['d']} fp32 ({dec['bytes_read_gb']:.2f} GB)")
    rows = [
        ("fp32 gemv coeffs @ stacked (floor, not fp64)", dec["fp32_gemv_floor_ms"]),
        ("fp64 Python loop acc += c*a (naive)", dec["fp64_python_loop_ms"]),
        ("fp64 blocked weighted_sum (batch path)", dec["fp64_blocked_weighted_sum_ms"]),
        (f"fp64 blocked weighted_sum, {dec['fp64_blocked_threads']} threads",
         dec["fp64_blocked_threaded_ms"]),
        ("fp64 blocked sum, all coefficients 1", dec["fp64_blocked_sum_coef1_ms"]),
        ("streaming: fold one arrival", dec["stream_fold_per_result_ms"]),
        ("streaming: critical path (last fold + decode)", dec["stream_critical_path_ms"]),
        ("cyclic n=256 s=27 decode vector, new set (QR)", dec["cyclic_solve_first_ms"]),
        ("  same, BLAS limited to 1 thread (as in train)", dec["cyclic_solve_first_1blas_ms"]),
        ("cyclic decode vector, cached", dec["cyclic_solve_cached_ms"]),
    ]
    for name, ms in rows:
        print(f"  {name:48} {ms:9.3f} ms")
    print(f"  relative error vs fp64 reference: blocked {dec['fp64_blocked_rel_error']:.1e}, "
          f"streaming {dec['stream_rel_error']:.1e}, fp32 gemv {dec['fp32_gemv_rel_error']:.1e}")
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
