"""Does ``gcode advise`` predict what running its advice live gives? (issue 28's acceptance: within
10%.)

For each case (4 workers, the versus bench's ``mlp``, one model), on one shared pool of Ray
workers:

  1. a short uncoded probe of the model's own ``gcode.fit`` functions (``gcode.advise.probe``,
     ``--probe-jobs`` rounds) gives the recommended CodingConfig and its predicted speedup over
     uncoded gcode;
  2. uncoded and the recommended config then run live for ``--jobs`` steps each under the same
     injection (``--repeats`` times, interleaved; medians);
  3. measured speedup = uncoded's runtime / the recommended config's; error = predicted /
     measured − 1.

Cases: ``bursty``, bursty (B, W, λ) = (1, 2, 1) stragglers (``--base`` seconds, 5x slower when
straggling); ``trace``, a Gilbert–Elliott trace of persistently slow workers (bad spells of about
10 rounds, 4x slower; seed 0), scaled so that a good round takes ``--base`` seconds. Every run
trains one model for every step.

    python benchmarks/advise_live.py --out benchmarks/results        # ~5 minutes on 2 cores

Writes ``advise_live.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_auto_live import PERSISTENT


def inject_of(case: str, base: float, rounds: int, tmp: Path):
    import gcode
    if case == "bursty":
        return gcode.InjectConfig(model="bursty", params={"B": 1, "W": 2, "lam": 1, "base": base,
                                                          "slowdown": 5.0, "straggle_prob": 0.5})
    from gcode.stragglers import GilbertElliottDelay
    path = tmp / "ge_persistent.csv"
    times = GilbertElliottDelay(**PERSISTENT, base=base).sample(rounds, 4, 0)
    np.savetxt(path, times, delimiter=",", fmt="%.9f")
    return gcode.InjectConfig(trace=str(path))


def run_case(case: str, args, workload, pool, tmp: Path) -> dict:
    import gcode
    from gcode.advise import probe
    inject = inject_of(case, args.base, args.jobs + 16, tmp)
    scaling = gcode.ScalingConfig(workers=4, round_timeout_s=120)
    run = gcode.RunConfig(jobs=args.jobs, batch_size=args.batch_size, seed=args.seed, inject=inject,
                          checkpoint=None)
    fns = (workload.model_fn, workload.loss_fn, workload.dataset_fn, workload.optimizer_fn)
    advice = probe(*fns, scaling=scaling, run=run, jobs=args.probe_jobs, pool=pool,
                   collate_fn=workload.collate_fn)
    recommended = advice["recommended"]["coding_config"]
    runs = {"uncoded": [], "recommended": []}
    for _ in range(args.repeats):
        for name, coding in (("uncoded", {"scheme": "uncoded"}), ("recommended", recommended)):
            res = gcode.fit(*fns, coding=gcode.CodingConfig(**coding), scaling=scaling, run=run,
                            pool=pool, progress=False, collate_fn=workload.collate_fn)
            m = res.metrics
            runs[name].append({"runtime_s": m["runtime_s"], "rounds": m["rounds"], "waits": m["waits"],
                               "models": m["models"], "steps_per_model": m["steps_per_model"],
                               "overhead_s_per_round": m["overhead_s_per_round"],
                               "final_loss": m["final_loss"]})
    median = {k: float(np.median([r["runtime_s"] for r in v])) for k, v in runs.items()}
    measured = median["uncoded"] / median["recommended"]
    predicted = advice["predicted"]["speedup_vs_uncoded"]
    return {"inject": {"model": inject.model, "params": inject.params,
                       "trace": "Gilbert-Elliott persistent, seed 0" if inject.trace else None},
            "advice": advice, "recommended": advice["recommended"]["label"], "runs": runs,
            "median_runtime_s": median, "predicted_speedup": predicted,
            "measured_speedup": measured, "error": predicted / measured - 1,
            "within_10pct": abs(predicted / measured - 1) <= 0.10}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--cases", default="bursty,trace")
    p.add_argument("--jobs", type=int, default=40)
    p.add_argument("--probe-jobs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--base", type=float, default=0.05, help="seconds of an on-time worker's delay")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from gcode.bench.report import machine_info
    from gcode.bench.versus import VersusConfig, workload_of
    from gcode.config import ClusterConfig
    from gcode.runtime import pool_session
    workload = workload_of(VersusConfig(model="mlp", workers=4, batch_size=args.batch_size))
    doc = {"what": __doc__.split("\n\n")[0].replace("\n", " "), "model": "mlp", "workers": 4,
           "jobs": args.jobs, "probe_jobs": args.probe_jobs, "batch_size": args.batch_size,
           "base_s": args.base, "repeats": args.repeats, "cases": {}, "environment": machine_info()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gcal") as tmp, \
            pool_session(ClusterConfig(workers=4, startup_timeout_s=300)) as pool:
        for case in args.cases.split(","):
            t0, load_before = time.perf_counter(), os.getloadavg()
            doc["cases"][case] = {**run_case(case, args, workload, pool, Path(tmp)),
                                  "seconds": time.perf_counter() - t0,
                                  "load_average": {"before": load_before, "after": os.getloadavg()}}
            c = doc["cases"][case]
            print(f"{case}: recommended {c['recommended']}: predicted {c['predicted_speedup']:.3f}x "
                  f"uncoded, measured {c['measured_speedup']:.3f}x ({c['error']:+.1%})", flush=True)
            (out / "advise_live.json").write_text(json.dumps(doc, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
