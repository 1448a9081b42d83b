"""M-SGC with one straggler of slack, simulated on `gcode bench versus`'s delay tables.

The bench injects bursty (B, W, λ) = (1, 2, 2) stragglers, which uses the whole budget of M-SGC
for exactly that model. On a real machine a worker's pass is sometimes slow by itself, and a
round-ending policy may then declare it a straggler, which leaves no budget for the next
round's real ones. This replays each seed's delay table (base 3, stragglers 9, in units of one
worker's compute) plus compute noise: |N(0, 0.12)| on every pass, and a slow pass (+30–80%) in
a fraction ``--slow`` of worker-rounds. DDP's step is its slowest rank's compute plus delay.
Prints vs_ddp (DDP's time over M-SGC's) per scheme and policy: median and minimum over seeds.

    python benchmarks/sim_slack.py [--seeds 30] [--jobs 16] [--slow 0 0.1 0.2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gcode.bench.versus import VersusConfig, delay_table
from gcode.codes import make_scheme
from gcode.sim.load_model import LoadModel
from gcode.sim.policy import EarliestPolicy, GapPolicy
from gcode.sim.simulator import simulate

SCHEMES = {"msgc (1,2,2)": (1, 2, 2), "msgc (1,2,3)": (1, 2, 3)}
POLICIES = {"earliest": EarliestPolicy(), "gap 0.05": GapPolicy(0.05), "gap 0.1": GapPolicy(0.1)}


def vs_ddp(seed: int, slow: float, jobs: int, n: int = 8) -> dict[str, float]:
    """DDP's simulated time over each (scheme, policy)'s, on seed ``seed``'s table."""
    table, _ = delay_table(VersusConfig(jobs=jobs, seed=seed, workers=n), jobs + 16, 1.0)
    rng = np.random.default_rng([seed, 0x51A])
    compute = 1 + 0.12 * np.abs(rng.standard_normal(table.shape))
    compute += (rng.random(table.shape) < slow) * rng.uniform(0.3, 0.8, table.shape)
    ddp = float(np.max(table[:jobs] + compute[:jobs], axis=1).sum())
    out = {}
    for name, (B, W, lam) in SCHEMES.items():
        for pname, policy in POLICIES.items():
            scheme = make_scheme("msgc", n=n, jobs=jobs, B=B, W=W, lam=lam, gc_code="fr")
            load = scheme.load * n  # the coded load, in units of one worker's share
            result = simulate(scheme, table + load * (compute - 1), policy, LoadModel("additive", n))
            assert result.decoded_jobs == jobs
            out[f"{name}, {pname}"] = ddp / result.runtime_s
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--slow", type=float, nargs="+", default=[0.0, 0.1, 0.2],
                    help="fractions of worker-rounds with a slow pass")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    result = {}
    for slow in args.slow:
        runs = [vs_ddp(seed, slow, args.jobs) for seed in range(args.seeds)]
        for key in runs[0]:
            values = [r[key] for r in runs]
            result.setdefault(str(slow), {})[key] = {"median": float(np.median(values)),
                                                     "min": float(np.min(values))}
    out = {"seeds": args.seeds, "jobs": args.jobs, "vs_ddp": result}
    print(markdown_table(out))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=1))
    return 0


def markdown_table(out: dict) -> str:
    """vs DDP per share of slow passes, scheme and policy: median and minimum over the seeds
    (the JSON ``main`` writes)."""
    lines = ["| slow passes | scheme, policy | vs DDP median | min |", "|---|---|---|---|"]
    lines += [f"| {float(slow):.0%} | {key} | {v['median']:.2f}x | {v['min']:.2f}x |"
              for slow, by in out["vs_ddp"].items() for key, v in by.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
