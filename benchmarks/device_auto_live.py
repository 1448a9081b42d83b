"""Issue 28's live acceptance of the auto scheme: 8 workers on a machine with >= 16 cores,
mlp-wide, one model. Is auto within 5% of the best fixed one-model row of the same run, and is
its coordinator overhead per round within 1 ms of a fixed scheme's?

Three ``gcode bench versus`` runs, each on its own shared table of injected delays:

  * ``bursty1``: bursty (B, W, λ) = (1, 2, 2) stragglers one step long (base = 1 x one worker's
    measured compute, ``straggler_steps = 1``);
  * ``bursty3``: the same, three steps long (the bench's default);
  * ``trace1``: a Gilbert–Elliott trace with persistently slow workers (bad spells of about 10
    rounds, 4x slower; generated from seed 0 and written next to the result), replayed with its
    time scale set so that a round's slowest worker trails its median by one step.

Each run has DDP (one model) and the one-model rows: uncoded, GC s = 1 and s = 2 under the paper
and the earliest policies, and auto (which with one model chooses among uncoded and GC only).
Per run the summary gives auto's wall time over the best fixed row's (``auto_vs_best``, above 1:
auto slower), each row's ratio to DDP, and the coordinator overhead per round of auto, of the
fixed rows (mean and range) and the difference. Every row trains one model for every step.

    python benchmarks/device_auto_live.py --out $OUT                 # the device run, ~4 minutes
    python benchmarks/device_auto_live.py --quick --out DIR          # 4 workers, mlp, 6 jobs
    python benchmarks/device_auto_live.py --workers 4 --model mlp --repeats 3 \
        --name auto_live_2core --out benchmarks/results            # the 2-core box

Writes ``NAME.json`` (default ``device_auto_live.json``) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIXED = ("uncoded", "gc-s1", "gc-s2", "gc-s1-earliest", "gc-s2-earliest")
ROWS = (*FIXED, "auto")
#: persistently slow workers: the ``ge-persistent`` chain of gcode bench auto
PERSISTENT = {"p_good_to_bad": 0.02, "p_bad_to_good": 0.1, "slowdown": 4.0}


def persistent_trace(path: Path, workers: int, rounds: int, seed: int = 0) -> Path:
    """A (rounds, workers) Gilbert–Elliott trace of persistently slow workers, as CSV."""
    from gcode.stragglers import GilbertElliottDelay
    times = GilbertElliottDelay(**PERSISTENT).sample(rounds, workers, seed)
    np.savetxt(path, times, delimiter=",", fmt="%.9f")
    return path


def summarize(result: dict) -> dict:
    """auto against the fixed one-model rows of one versus result."""
    rows = {r.get("row", r["scheme"]): r for r in result["rows"]}
    fixed = [rows[name] for name in FIXED if name in rows]
    auto = rows["auto"]
    best = min(fixed, key=lambda r: r["wall_s"])
    overheads = [r["overhead_s_per_round"] for r in fixed]
    return {
        "models": {name: r["models"] for name, r in rows.items()},
        "steps_per_model": {name: r["steps_per_model"] for name, r in rows.items()},
        "wall_s": {name: r["wall_s"] for name, r in rows.items()},
        "vs_ddp": {name: r["vs_ddp"] for name, r in rows.items()},
        "best_fixed": best["row"], "auto_vs_best": auto["wall_s"] / best["wall_s"],
        "auto_within_5pct": auto["wall_s"] <= 1.05 * best["wall_s"],
        "overhead_ms_per_round": {name: 1e3 * r["overhead_s_per_round"] for name, r in rows.items()
                                  if r["system"] == "gcode"},
        "auto_overhead_ms": 1e3 * auto["overhead_s_per_round"],
        "fixed_overhead_ms_mean": 1e3 * float(np.mean(overheads)),
        "fixed_overhead_ms_range": [1e3 * min(overheads), 1e3 * max(overheads)],
        "auto_overhead_excess_ms": 1e3 * (auto["overhead_s_per_round"] - float(np.mean(overheads))),
        "auto_segments": auto["params"].get("segments"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true", help="4 workers, mlp, 6 jobs (a CPU check)")
    p.add_argument("--runs", default="bursty1,bursty3,trace1")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--model", default="mlp-wide")
    p.add_argument("--jobs", type=int, default=40)
    p.add_argument("--repeats", type=int, default=1, help="interleaved repeats (medians)")
    p.add_argument("--name", default="device_auto_live")
    args = p.parse_args(argv)
    from gcode.bench.report import machine_info
    from gcode.bench.versus import VersusConfig, run_versus
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = (VersusConfig(model="mlp", workers=4, jobs=6, schemes=ROWS) if args.quick else
            VersusConfig(model=args.model, workers=args.workers, jobs=args.jobs, schemes=ROWS,
                         repeats=args.repeats))
    tmp = tempfile.TemporaryDirectory(prefix="gcauto")  # the trace: regenerated from its seed
    trace = persistent_trace(Path(tmp.name) / "ge_persistent.csv", base.workers, base.jobs + 16)
    configs = {"bursty1": {"straggler_steps": 1.0}, "bursty3": {"straggler_steps": 3.0},
               "trace1": {"inject": None, "inject_trace": str(trace), "time_scale": None,
                          "straggler_steps": 1.0}}
    doc = {"what": __doc__.split("\n\n")[0], "runs": {}, "environment": machine_info()}
    for name in args.runs.split(","):
        cfg = replace(base, **configs[name])
        t0, load_before = time.perf_counter(), os.getloadavg()
        result = run_versus(cfg)
        doc["runs"][name] = {"config": {**asdict(cfg), **result["config"]},
                             "summary": summarize(result), "rows": result["rows"],
                             "seconds": time.perf_counter() - t0,
                             "load_average": {"before": load_before, "after": os.getloadavg()}}
        s = doc["runs"][name]["summary"]
        print(f"{name}: auto {s['wall_s']['auto']:.2f} s, best fixed {s['best_fixed']} "
              f"{s['wall_s'][s['best_fixed']]:.2f} s: auto/best {s['auto_vs_best']:.3f}; "
              f"overhead auto {s['auto_overhead_ms']:.1f} ms vs fixed {s['fixed_overhead_ms_mean']:.1f} "
              f"ms; vs DDP " + ", ".join(f"{k} {v:.2f}x" for k, v in s["vs_ddp"].items()), flush=True)
        (out / f"{args.name}.json").write_text(json.dumps(doc, indent=1, default=str))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
