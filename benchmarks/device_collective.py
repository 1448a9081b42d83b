"""The collective data plane on a GPU machine: a functional check with gloo on CUDA tensors.

On a machine with one GPU, ``--world`` processes share it and form a gloo group through the
collective plane's own rendezvous (:class:`gcode.runtime.collective.CollectivePlane`), as the
worker actors do; no Ray is needed. For each scheme, every rank plays one worker: per round it
computes its coded results from *real* partial gradients (an MLP's fp32 gradients on the GPU,
one per chunk of a job's batch), keeps them on the GPU, folds the decode coefficients of its own
results into the job's accumulator (fp64 for cyclic codes, fp32 for FR and uncoded), and the
ranks allreduce it once the job is decodable. Random conforming stragglers (one seed on every
rank) withhold their results, so their accumulators hold zeros for what they never finished.

Checked per decoded job, on every rank:

* the allreduced sum equals the direct fp64 sum of all the job's partial gradients within 1e-6
  relative (each rank computes the direct sum itself);
* the sum is bit-identical on every rank, and after an SGD step with it the model replicas are
  bit-identical (the plane's checksum allreduce, :func:`check_identical`).

It also times a gloo allreduce of 13 MB (mlp-wide's fp32 gradient) of CUDA tensors among the
ranks: gloo copies CUDA tensors through host memory, so this is a functional figure, not NCCL's.
With two or more GPUs, ``--backend nccl`` runs the same checks one rank per GPU; the NCCL
figures (DDP against the collective plane across GPUs) are still to come.

    python benchmarks/device_collective.py --out benchmarks/results/device_collective.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SCHEMES = (("uncoded", {}), ("gc", {"s": 1, "gc_code": "fr"}), ("gc", {"s": 1, "gc_code": "cyclic"}),
           ("srsgc", {"B": 1, "W": 2, "lam": 2, "gc_code": "fr"}),
           ("msgc", {"B": 1, "W": 2, "lam": 2, "gc_code": "cyclic"}))
JOBS = 6
TOLERANCE = 1e-6
MB = 1e6


def make_model(device) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(),
                               torch.nn.Linear(512, 10)).to(device)


def chunk_gradient(model, job: int, chunk: int, device) -> torch.Tensor:
    """The fp32 gradient of the model's loss on chunk ``chunk`` of job ``job``'s batch (on the GPU)."""
    gen = torch.Generator().manual_seed(1_000 * job + chunk)
    x = torch.randn(32, 256, generator=gen).to(device)
    y = torch.randint(0, 10, (32,), generator=gen).to(device)
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).detach().clone()


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rank(rank: int, world: int, port: int, backend: str, gpus: int, out: str) -> None:
    """One rank (worker): every scheme's rounds, then a timed allreduce; its report to ``out.rank``."""
    from gcode.codes import make_scheme
    from gcode.runtime.collective import (
        CollectiveConfig,
        CollectivePlane,
        GroupConfig,
        Rendezvous,
        ReplicaMismatch,
        accumulate_dtype_for,
    )
    from gcode.runtime.collective.replicas import check_identical, checksum
    from gcode.sim.verify import random_conforming_stragglers

    device = torch.device("cuda", rank % gpus) if gpus else torch.device("cpu")  # cpu: --device cpu
    if gpus:
        torch.cuda.set_device(device)
    model = make_model(device)
    numel = sum(p.numel() for p in model.parameters())
    report: dict = {"rank": rank, "device": torch.cuda.get_device_name(device) if gpus else "cpu",
                    "numel": numel, "schemes": []}
    rdv = Rendezvous("127.0.0.1", port, world, 0, backend, 120.0)
    for name, params in SCHEMES:
        scheme = make_scheme(name, n=world, jobs=JOBS, **params)
        dtype = accumulate_dtype_for(scheme.message_dtype)
        plane = CollectivePlane(numel, device, CollectiveConfig(group=GroupConfig(backend=backend),
                                                                accumulate_dtype=dtype))
        plane.join_group(rdv, rank).result(timeout=180)
        rdv = Rendezvous("127.0.0.1", port + 1 + len(report["schemes"]), world, 0, backend, 120.0)
        rng = np.random.default_rng(7)  # the same stragglers on every rank
        grads: dict[int, torch.Tensor] = {}
        errors, identical, mismatch, stragglers_seen, decoded = [], True, None, 0, 0
        replica = make_model(device)
        for r in range(scheme.total_rounds):
            stragglers = random_conforming_stragglers(scheme, r, rng)
            stragglers_seen += int(stragglers.sum())
            if not stragglers[rank]:
                for task in scheme.plan(r)[rank]:
                    chunks = len(scheme.chunk_fractions_for(task.job))
                    if task.job not in grads:
                        grads[task.job] = torch.stack([chunk_gradient(model, task.job, c, device)
                                                       for c in range(chunks)])
                    coded = (torch.as_tensor(np.asarray(task.coefficients, dtype=np.float64), device=device)
                             @ grads[task.job][list(task.chunks)].double())
                    plane.keep((rank, r, task.slot), task.job,
                               coded.to(getattr(torch, np.dtype(scheme.message_dtype).name)))
            scheme.record(r, ~stragglers)
            for t in range(max(0, r - scheme.delay), r + 1):
                if not scheme.decodable(t) or scheme.is_decoded(t):
                    continue
                mine = [(tuple(key), a) for key, a in scheme.decode(t) if key.worker == rank]
                total = plane.decode(t, mine).result(timeout=180)
                chunks = len(scheme.chunk_fractions_for(t))
                direct = torch.stack([chunk_gradient(model, t, c, device)
                                      for c in range(chunks)]).double().sum(0)
                errors.append(float((total.double() - direct).norm() / direct.norm()))
                with torch.no_grad():
                    start = 0
                    for p in replica.parameters():
                        p -= 1e-3 * total[start:start + p.numel()].reshape(p.shape).to(p.dtype)
                        start += p.numel()
                try:  # one checksum allreduce: raises naming the replica whose ranks differ
                    plane.check_replicas({f"sum of job {t}": [total],
                                          "model": list(replica.parameters())}).result(timeout=180)
                except ReplicaMismatch as exc:
                    identical, mismatch = False, str(exc)
                plane.release(t)
                grads.pop(t, None)
                decoded += 1
        report["schemes"].append({"scheme": name, "params": params, "accumulate_dtype": dtype,
                                  "message_dtype": np.dtype(scheme.message_dtype).name, "jobs": JOBS,
                                  "decoded_jobs": decoded, "straggler_slots": stragglers_seen,
                                  "max_rel_error": max(errors), "replicas_identical": identical,
                                  "mismatch": mismatch,
                                  "replica_checksum": checksum(list(replica.parameters())),
                                  "exact": decoded == JOBS and max(errors) <= TOLERANCE})
        plane.close()
    # a timed gloo allreduce of mlp-wide's 13 MB gradient on CUDA tensors (informational)
    plane = CollectivePlane(1, device, CollectiveConfig(group=GroupConfig(backend=backend)))
    plane.join_group(rdv, rank).result(timeout=180)
    import torch.distributed as dist
    x = torch.ones(int(13 * MB // 4), device=device)
    times = []
    for i in range(6):
        dist.barrier()
        sync(device)
        t0 = time.perf_counter()
        dist.all_reduce(x)
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    report["allreduce_13MB_s"] = statistics.median(times)
    report["check_identical"] = bool(check_identical({"x": [x]}, device))
    plane.close()
    with open(f"{out}.{rank}", "w") as f:
        json.dump(report, f)


def _free_port_block(count: int) -> int:
    """A port p with p … p+count-1 free on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            socks = []
            for p in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports on 127.0.0.1")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", type=int, default=4, help="ranks (processes); with gloo they share the GPUs")
    p.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu: the same checks on CPU tensors (a smoke test of this script without a GPU)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "device_collective.json"))
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("device_collective.py: no CUDA device here (--device cpu runs the checks on CPU tensors)",
              file=sys.stderr)
        return 2
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    if args.backend == "nccl" and gpus < args.world:  # also --device cpu
        print(f"device_collective.py: NCCL needs a GPU per rank: {gpus} GPU(s) for --world {args.world}",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    import torch.multiprocessing as mp
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stem = os.path.join(tmp, "rank")
        mp.start_processes(_rank,
                           args=(args.world, _free_port_block(len(SCHEMES) + 2), args.backend, gpus, stem),
                           nprocs=args.world, start_method="spawn", join=True)
        reports = [json.loads(Path(f"{stem}.{r}").read_text()) for r in range(args.world)]
    rows = []
    for i, row in enumerate(reports[0]["schemes"]):
        per_rank = [rep["schemes"][i] for rep in reports]
        rows.append({**{k: row[k] for k in ("scheme", "params", "accumulate_dtype", "message_dtype", "jobs",
                                             "decoded_jobs", "straggler_slots")},
                     "max_rel_error": max(r["max_rel_error"] for r in per_rank),
                     "replicas_identical": all(r["replicas_identical"] for r in per_rank)
                     and len({r["replica_checksum"] for r in per_rank}) == 1,
                     "exact": all(r["exact"] for r in per_rank)})
    result = {"what": "the collective plane on CUDA tensors: coded, coefficient-folded GPU accumulators "
                      "allreduced, against the direct fp64 sum (benchmarks/device_collective.py)",
              "backend": args.backend, "world": args.world, "gpus": gpus, "device": reports[0]["device"],
              "numel": reports[0]["numel"], "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
              "tolerance": TOLERANCE, "rows": rows,
              "allreduce_13MB_s": max(r["allreduce_13MB_s"] for r in reports),
              "all_exact": all(r["exact"] and r["replicas_identical"] for r in rows),
              "wall_s": time.perf_counter() - t0,
              "note": ("one GPU: the ranks share it and gloo moves CUDA tensors through host memory, a "
                       "functional check; NCCL figures across GPUs are still to come")
              if args.backend == "gloo" else "NCCL, one rank per GPU"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['device']}, {args.world} ranks, {args.backend}, d = {result['numel']}:")
    print("| scheme | params | accumulator | jobs decoded | straggler slots | max rel. error "
          "| replicas identical |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scheme']} | {r['params']} | {r['accumulate_dtype']} | "
              f"{r['decoded_jobs']}/{r['jobs']} | "
              f"{r['straggler_slots']} | {r['max_rel_error']:.2e} | {r['replicas_identical']} |")
    print(f"gloo allreduce of 13 MB {args.device} tensors among {args.world} ranks: "
          f"{result['allreduce_13MB_s'] * 1e3:.1f} ms")
    print(f"all exact: {result['all_exact']}; wrote {out}")
    return 0 if result["all_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
