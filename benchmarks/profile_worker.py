"""Where a gcode worker's time goes in one task, against plain torch on the same samples.

One process, no Ray: the bench's model (``gcode bench versus --model``) on one device, a share of
``--samples`` samples (a job's batch over the workers). Phases of one uncoded task, as
``GradientWorker._work`` runs them (medians over ``--repeats`` after two warm-ups, ms):
  load     parameters from a page-locked host vector into the flat model (one copy);
  data     the samples by index, collated and moved to the device;
  backward per-sample losses, then one weighted backward pass;
  gather   the flat gradient from the parameters' ``.grad`` tensors;
  to_host  the flat gradient into a page-locked host vector (the shared-memory result buffer).
``task`` times ``TaskComputer.coded_gradient`` whole (data, backward, gather). ``worker`` is one
whole task as a worker runs it (load, task, to_host), and ``worker_ahead`` the same with the
samples read ahead (``--prefetch on``): each task starts reading the next task's samples on a
background thread, then computes. ``plain`` is what a DDP rank computes for the same samples:
``loss.sum().backward()`` on an ordinary module, after ``zero_grad(set_to_none=True)``, without
data. GPU times synchronize after each phase.

    python benchmarks/profile_worker.py --model resnet18 --samples 256 [--device cuda] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gcode.bench.versus import MODELS, VersusConfig, workload_of
from gcode.runtime.worker.prefetch import BatchPrefetcher
from gcode.train import TaskComputer, build_model


def profile(model: str, samples: int, device: str, repeats: int) -> dict:
    """Median ms of each phase (module docstring), on one thread as a worker runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _profile(model, samples, device, repeats)
    finally:
        torch.set_num_threads(threads)


def _profile(model: str, samples: int, device: str, repeats: int) -> dict:
    workload = workload_of(VersusConfig(model=model))
    computer = TaskComputer(workload, device)
    dev = computer.device
    pinned = dev.type == "cuda"
    host_params = torch.empty(computer.num_params, pin_memory=pinned)
    host_params.copy_(computer.model.params.cpu())
    host_out = torch.empty(computer.num_params, pin_memory=pinned)
    out = torch.empty(computer.num_params, device=dev)
    rows = np.arange(samples)
    weights = torch.ones(samples, device=dev)
    plain = build_model(workload.model_fn, 0).to(dev).train()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def timed(fn, *args):
        sync()
        t0 = time.perf_counter()
        value = fn(*args)
        sync()
        return 1e3 * (time.perf_counter() - t0), value

    phases: dict[str, list[float]] = {k: [] for k in
                                      ("load", "data", "backward", "gather", "to_host", "task",
                                       "worker", "worker_ahead", "plain")}
    ahead = BatchPrefetcher(computer.host_batch)
    ahead.start(rows)

    def task_rows(i: int) -> np.ndarray:  # task i's samples: the next share of the dataset
        return (rows + samples * i) % len(computer.dataset)

    def worker_task(read_ahead: bool, i: int):
        computer.model.load(host_params.numpy())
        batch = None
        if read_ahead:  # this task's samples were read ahead; read the next task's meanwhile
            batch = ahead.take(task_rows(i))
            ahead.start(task_rows(i + 1))
        computer.coded_gradient([task_rows(i)], [1.0], out, batch)
        host_out.copy_(out)

    def backward(batch):
        losses = computer.losses(batch, samples)
        computer.model.release_grads()
        (losses * weights).sum().backward()

    def plain_pass(batch):
        plain.zero_grad(set_to_none=True)
        workload.loss_fn(plain, batch).sum().backward()

    for i in range(repeats + 2):
        t = {}
        t["load"], _ = timed(computer.model.load, host_params.numpy())
        t["data"], batch = timed(computer.batch, rows)
        t["backward"], _ = timed(backward, batch)
        t["gather"], _ = timed(computer.model.gather_grads, out)
        t["to_host"], _ = timed(host_out.copy_, out)
        t["task"], _ = timed(computer.coded_gradient, [rows], [1.0], out)
        t["worker"], _ = timed(worker_task, False, i)
        t["worker_ahead"], _ = timed(worker_task, True, i)
        t["plain"], _ = timed(plain_pass, batch)
        if i >= 2:
            for k, v in t.items():
                phases[k].append(v)
    ahead.close()
    median = {k: round(statistics.median(v), 3) for k, v in phases.items()}
    return {"model": model, "samples": samples, "device": str(dev), "repeats": repeats,
            "num_params": computer.num_params, "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            "median_ms": median}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    ap.add_argument("--samples", type=int, default=64, help="samples in the task (default 64)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", dest="json_out", help="also write the result to this JSON file")
    args = ap.parse_args(argv)
    result = profile(args.model, args.samples, args.device, args.repeats)
    print(f"{args.model}, {args.samples} samples on {result['device']} (median ms)")
    print("| " + " | ".join(result["median_ms"]) + " |")
    print("|" + "---|" * len(result["median_ms"]))
    print("| " + " | ".join(f"{v:.2f}" for v in result["median_ms"].values()) + " |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
