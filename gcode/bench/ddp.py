"""Plain torch DistributedDataParallel on the same stragglers: the baseline of ``bench versus``.

n processes (``torch.multiprocessing.spawn``), one rank each, gloo on CPU (or on GPUs that ranks
share) and NCCL when every rank has a GPU of its own. Step t uses job t's batch (the same
indices gcode draws), split evenly over the ranks, and the same objective: the mean loss over
the global batch. A rank sleeps its injected delay for (step t, rank) after computing, before
the allreduce (a DDP communication hook that sleeps before the first bucket's allreduce), as a
gcode worker in ``add`` mode sleeps after computing, before it sends.

``models = M`` trains M models round-robin as gcode does (step t updates model t mod M, each
seeded as gcode seeds model m, each a DistributedDataParallel module with its own optimizer), so
a gcode row that trains M models is compared with DDP training the same M models for the same
steps per model.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DDPRun:
    workload: object             # gcode.train.Workload
    workers: int
    jobs: int
    batch_size: int
    seed: int
    delays: np.ndarray           # (jobs, workers) seconds
    use_gpu: bool = False
    models: int = 1              # M models round-robin: step t updates model t mod M


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ddp(run: DDPRun, timeout_s: float = 600.0) -> dict:
    """Train with DDP; returns wall_s (the steps, after a barrier), steps, models,
    steps_per_model (the least-trained model's), compute_s_per_round (forward + backward of one
    rank's shard, without communication), backend and param_checksum (one per model)."""
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory(prefix="gcddp") as tmp:
        out = Path(tmp) / "rank0.json"
        port = free_port()
        ctx = mp.start_processes(_rank_main, args=(run, port, str(out), timeout_s),
                                 nprocs=run.workers, join=False, start_method="spawn")
        deadline = time.monotonic() + timeout_s
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                raise TimeoutError(f"DDP did not finish within {timeout_s:.0f} s")
        return json.loads(out.read_text())


def _backend(run: DDPRun) -> tuple[str, str]:
    import torch
    if not (run.use_gpu and torch.cuda.is_available()):
        return "gloo", "cpu"
    own = torch.cuda.device_count() >= run.workers
    return ("nccl" if own else "gloo"), "cuda"


def _rank_main(rank: int, run: DDPRun, port: int, out: str, timeout_s: float) -> None:
    import datetime

    import torch
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    from gcode.runtime.data import job_indices, model_seed
    from gcode.train import build_model
    from gcode.train.compute import fetch
    from gcode.train.flat import exact_fp32
    from gcode.train.workload import build_optimizer, to_device

    exact_fp32()  # as gcode's workers: the same arithmetic on both sides of the comparison
    backend, kind = _backend(run)
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}" if kind == "cuda" else "cpu")
    if kind == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(1)  # one core per rank, as each gcode worker
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=run.workers,
                            timeout=datetime.timedelta(seconds=timeout_s))
    w = run.workload
    models = [build_model(w.model_fn, model_seed(run.seed, m)).to(device) for m in range(run.models)]
    ddps = [DistributedDataParallel(model, device_ids=[device] if kind == "cuda" else None)
            for model in models]
    pending = {"delay": 0.0}

    def sleep_then_allreduce(state, bucket):
        if pending["delay"] > 0:
            time.sleep(pending["delay"])
            pending["delay"] = 0.0
        return allreduce_hook(state, bucket)

    for ddp in ddps:
        ddp.register_comm_hook(None, sleep_then_allreduce)
    optimizers = [build_optimizer(w.optimizer_fn, ddp) for ddp in ddps]
    ddp, optimizer = ddps[0], optimizers[0]
    dataset = w.dataset_fn()
    scale = run.workers / run.batch_size  # DDP averages over ranks: Σ losses / batch overall

    def shard(t: int):
        idx = np.array_split(job_indices(run.seed, t, run.batch_size, len(dataset)), run.workers)[rank]
        return len(idx), to_device(w.collate(fetch(dataset, idx)), device)

    def sync():
        if kind == "cuda":
            torch.cuda.synchronize(device)

    # untimed: forward + backward of this rank's first shard, without communication
    _, batch = shard(0)
    compute = []
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        with ddp.no_sync():
            (w.loss_fn(ddp, batch).sum() * scale).backward()
        sync()
        compute.append(time.perf_counter() - t0)
        optimizer.zero_grad(set_to_none=True)
    dist.barrier()
    start = time.perf_counter()
    for t in range(run.jobs):
        _, batch = shard(t)
        pending["delay"] = float(run.delays[t, rank])
        ddp, optimizer = ddps[t % run.models], optimizers[t % run.models]
        losses = w.loss_fn(ddp, batch)
        (losses.sum() * scale).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    dist.barrier()
    wall = time.perf_counter() - start
    if rank == 0:
        checksums = [float(sum(p.detach().double().sum() for p in model.parameters()))
                     for model in models]
        Path(out).write_text(json.dumps({
            "wall_s": wall, "steps": run.jobs, "models": run.models,
            "steps_per_model": run.jobs // run.models, "backend": backend, "device": kind,
            "compute_s_per_round": float(np.median(compute)), "param_checksum": checksums}))
    dist.destroy_process_group()
