"""What the canonical-sum mode costs a worker: one task's gradient, default against exact_blocks=K.

    .venv/bin/python benchmarks/exact_blocks_cost.py [--repeats 7]

A worker's task of S samples (one chunk, coefficient 1) computed as gcode's workers compute it
(:class:`gcode.train.compute.TaskComputer`, one torch thread, as a worker with one CPU has):
by default one forward and backward pass over the S samples into an fp32 message; with
``exact_blocks=K`` S/K passes of K samples each, added into an fp64 message. The variants are
timed interleaved, ``--repeats`` rounds of each (the median is reported), so that a loaded
machine slows them alike; reported as the ratio to the default. Models: the MLP preset on
digits, ResNet-18 (width 8, GroupNorm) on CIFAR-shaped images, and the character transformer
on the bundled text. Results: benchmarks/results/exact_blocks_cost.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gcode.train.compute import TaskComputer
from gcode.train.presets import preset_workload

OUT = Path(__file__).resolve().parent / "results" / "exact_blocks_cost.json"
#: (name, preset workload, samples per task S, block sizes K)
CASES = (
    ("mlp on digits", preset_workload("mlp", "digits"), 64, (32, 16, 8, 4)),
    ("resnet18 w8 on cifar", preset_workload("resnet18", "cifar", model_params={"width": 8},
                                             num_samples=512), 32, (16, 8, 4)),
    ("charlm on text", preset_workload("charlm", "text", model_params={"dim": 64, "layers": 2,
                                                                       "heads": 4},
                                       dataset_params={"block": 32}), 32, (16, 8, 4)),
)


def timer(workload, samples: int, block: int):
    """A function timing one task of ``samples`` samples with blocks of ``block`` (0: default)."""
    computer = TaskComputer(dataclasses.replace(workload, exact_blocks=block))
    params = computer.model.snapshot()
    computer.load(0, params)
    rows = np.arange(samples)
    out = torch.empty(computer.num_params, dtype=torch.float64 if block else torch.float32)

    def run() -> float:
        t0 = time.perf_counter()
        computer.coded_gradient([rows], [1.0], out)
        return time.perf_counter() - t0
    run()  # warm up
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, workload, samples, blocks in CASES:
        variants = {0: timer(workload, samples, 0), **{k: timer(workload, samples, k) for k in blocks}}
        times = {k: [] for k in variants}
        for _ in range(args.repeats):
            for k, run in variants.items():
                times[k].append(run())
        base = statistics.median(times[0])
        for k in variants:
            median = statistics.median(times[k])
            rows.append({"model": name, "samples_per_task": samples, "exact_blocks": k,
                         "backward_passes": samples // k if k else 1, "median_ms": 1e3 * median,
                         "ratio_to_default": median / base})
            print(f"{name:22} S={samples:3d} {'default' if not k else f'K={k}':>8} "
                  f"{1e3 * median:8.2f} ms  {median / base:5.2f}x", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"repeats": args.repeats, "torch_threads": 1,
                               "load_average": os.getloadavg()[0], "rows": rows}, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
