"""How much do equal CPU workers' compute times spread, and does pinning each to its own
physical core narrow it? N processes, one torch thread each, run the same forward + backward
passes at once; the table gives each mode's per-pass spread (the slowest process against the
median) and the JSON every time.

    python benchmarks/cpu_spread.py --procs 8 --passes 6 --samples 51 --model resnet18

Modes: ``free`` leaves placement to the OS (as Ray and torch.distributed do); ``cores`` pins
process i to the first logical CPU of the i-th physical core (/sys topology), so no two
processes share a core's hyperthreads.
"""

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np


def physical_cores() -> list[int]:
    """One logical CPU per physical core (the lowest of its thread siblings), in order."""
    firsts = set()
    for cpu in sorted(os.sched_getaffinity(0)):
        path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        text = path.read_text().strip() if path.exists() else str(cpu)
        first = int(text.replace("-", ",").split(",")[0])
        firsts.add(first)
    return sorted(firsts)


def _worker(args, cpu, queue):
    import torch

    from gcode.bench.versus import MODELS
    from gcode.train import TaskComputer
    from gcode.train.presets import preset_workload
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)
    model, mparams, dataset, dparams = MODELS[args.model]
    workload = preset_workload(model, dataset, model_params=mparams, dataset_params=dparams,
                               num_samples=4096, seed=0, optimizer="sgd", lr=0.01)
    computer = TaskComputer(workload, "cpu")
    out = torch.empty(computer.num_params)
    rows = np.arange(args.samples)
    computer.coded_gradient([rows], [1.0], out)  # warm
    queue.put(("ready", None))
    times = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        computer.coded_gradient([rows], [1.0], out)
        times.append(time.perf_counter() - t0)
    queue.put(("times", times))


def run_mode(args, cpus):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(args, cpu, queue)) for cpu in cpus]
    for p in procs:
        p.start()
    results = [queue.get() for _ in range(2 * len(procs))]
    for p in procs:
        p.join()
    times = np.array([t for kind, t in results if kind == "times"])  # (procs, passes)
    per_pass_spread = times.max(axis=0) / np.median(times, axis=0)
    return {"per_process_median_s": np.median(times, axis=1).round(3).tolist(),
            "slowest_over_median": float(np.median(per_pass_spread)),
            "mean_s": float(times.mean()), "times_s": times.round(4).tolist()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--samples", type=int, default=51)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args()
    cores = physical_cores()
    print(f"{os.cpu_count()} logical CPUs, {len(cores)} physical cores: {cores}")
    result = {"logical_cpus": os.cpu_count(), "physical_cores": cores, "modes": {}}
    modes = {"free": [None] * args.procs}
    if len(cores) >= args.procs:
        modes["cores"] = cores[:args.procs]
    print("| mode | mean s/pass | slowest / median (per pass) | per-process medians |")
    print("|---|---|---|---|")
    for name, cpus in modes.items():
        r = run_mode(args, cpus)
        result["modes"][name] = r
        print(f"| {name} | {r['mean_s']:.3f} | {r['slowest_over_median']:.2f} | "
              f"{r['per_process_median_s']} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
