"""Decoded error of gradient codes on a GPU (issue 27, item 4): are replicas of a chunk
bit-identical, and does every straggler set decode within 1e-6 of the exact sum?

Self-contained (torch, numpy and gcode; no Ray): one process plays the n workers of one GC round
with gcode's own :class:`gcode.train.TaskComputer`, so each chunk is computed by each of its
s + 1 workers' tasks (replicas, as the workers compute them), then every straggler set of size s
is decoded (every one, or at most ``--max-sets``: the contiguous ones and random ones) with the
code's own decode vectors in float64 and compared with the exact sum
Σ_k g_k of the chunks' gradients (each chunk's fp32 gradient computed alone, summed in fp64).
Each chunk's gradient is computed twice there, to count the chunks whose two computations are
bit-identical; ``replica_floor`` is ‖Σ_k (second − first)‖ / ‖Σ_k g_k‖, the GPU's own
run-to-run difference, which a decode that never combines two replicas of a chunk (FR,
uncoded) inherits unamplified and a cyclic or group decode amplifies.

Per code (cyclic, fr, and group where gcode has it) and mode (``deterministic``: what gcode's GPU
workers run under a code whose decode weighs replicas with coefficients other than 1, see
:func:`gcode.train.flat.deterministic_algorithms`; ``default``: torch's defaults, as before) it
reports the worst and median relative error over all sets and jobs, the sets the code refuses
(it waits on them), the identical-replica fraction and the seconds per task. A configuration
whose worst error exceeds 1e-6 is marked ``refuse``.

    python benchmarks/device_exact.py --out $OUT                      # GPU: ResNet-18, n=8, s=2
    python benchmarks/device_exact.py --device cpu --width 4 --image 8 --batch 32 --out DIR  # CI

Writes ``device_exact.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before torch initialises cuBLAS
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from gcode.codes import GC_CODE_KINDS, make_scheme
from gcode.runtime.data import bounds_of, job_indices, model_seed
from gcode.train import TaskComputer, Workload, build_model, make_model_factory
from gcode.train.flat import deterministic_algorithms
from gcode.train.presets import classification_loss
from gcode.train.workload import WorkloadError

TOLERANCE = 1e-6


def synthetic_images(count: int, image: int, seed: int):
    """A CIFAR-shaped dataset of ``count`` random images (no download on the device)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 3, image, image, generator=g)
    y = torch.randint(0, 10, (count,), generator=g)
    return torch.utils.data.TensorDataset(x, y)


def _dataset(count, image, seed):
    return synthetic_images(count, image, seed)


def workload(args) -> Workload:
    from functools import partial
    model_fn = make_model_factory(args.model, (3, args.image, args.image), 10,
                                  **({"width": args.width} if args.width else {}))
    return Workload(model_fn, classification_loss,
                    partial(_dataset, args.batch * args.jobs, args.image, args.seed),
                    lambda params: torch.optim.SGD(params, lr=0.1), name=args.model)


def measure(args, kind: str, n: int, s: int, mode: str) -> dict:
    """One (code, n, s, mode) row: every job's every straggler set of size s."""
    device = torch.device(args.device)
    deterministic_algorithms(mode == "deterministic")
    wl = workload(args)
    computer = TaskComputer(wl, device)
    scheme = make_scheme("gc", n=n, jobs=args.jobs, s=s, gc_code=kind)
    code, plan = scheme.code, scheme.plan(0)
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(code.message_dtype)]
    bounds = bounds_of(np.asarray(scheme.chunk_fractions, dtype=np.float64), args.batch,
                       tuple(scheme.chunk_groups))
    row = {"code": kind, "n": n, "s": s, "mode": mode, "message_dtype": str(dtype).removeprefix("torch."),
           "model": args.model, "batch": args.batch, "jobs": args.jobs, "device": str(device),
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    params = build_model(wl.model_fn, model_seed(args.seed, 0))
    flat = torch.cat([p.detach().reshape(-1) for p in params.parameters()])
    errors, refused, same, chunks_seen, task_s, floors = [], 0, 0, 0, [], []
    try:
        for job in range(args.jobs):
            computer.load(job, flat)
            idx = job_indices(args.seed, job, args.batch, len(computer.dataset))
            rows = [idx[a:b] for a, b in bounds]
            exact = torch.zeros(computer.num_params, dtype=torch.float64, device=device)
            drift = torch.zeros_like(exact)  # Σ_k (second computation − first) of each chunk
            part, again = torch.empty_like(exact), torch.empty_like(exact)
            for r in rows:  # each chunk alone, twice: are the two bit-identical?
                computer.coded_gradient([r], [1.0], part)
                computer.coded_gradient([r], [1.0], again)
                exact += part
                drift += again - part
                same += bool(torch.equal(part, again))
                chunks_seen += 1
            floors.append(float(torch.linalg.vector_norm(drift) / torch.linalg.vector_norm(exact)))
            messages = torch.empty((n, computer.num_params), dtype=dtype, device=device)
            if job == 0:  # warm up (cuDNN's algorithm choice, allocations) before timing
                task = plan[0][0]
                computer.coded_gradient([rows[c] for c in task.chunks], task.coefficients, messages[0])
            for w in range(n):  # each worker's task: every chunk computed by its s + 1 workers
                task = plan[w][0]
                _sync(device)
                t0 = time.perf_counter()
                computer.coded_gradient([rows[c] for c in task.chunks], task.coefficients, messages[w])
                _sync(device)
                task_s.append(time.perf_counter() - t0)
            scale = float(torch.linalg.vector_norm(exact))
            wide = messages.double()  # decoded in fp64, as the coordinator decodes
            for stragglers in straggler_sets(n, s, args.max_sets, args.seed):
                arrived = np.ones(n, dtype=bool)
                arrived[list(stragglers)] = False
                if not code.decodable(arrived):
                    refused += 1
                    continue
                workers, a = code.decode_vector(arrived)
                coefficients = np.zeros(n)
                coefficients[workers] = a
                decoded = torch.as_tensor(coefficients, device=device) @ wide
                errors.append(float(torch.linalg.vector_norm(decoded - exact)) / scale)
    except WorkloadError as exc:  # an op with no deterministic implementation: refused
        row.update(verdict="refuse", error=str(exc))
        return row
    worst = max(errors) if errors else None
    row.update(max_rel_error=worst, median_rel_error=float(np.median(errors)) if errors else None,
               sets=len(errors), refused_sets=refused,
               every_set=math.comb(n, s) <= args.max_sets,
               identical_replicas=same / max(chunks_seen, 1),
               replica_floor=max(floors),
               task_s_median=float(np.median(task_s)),
               verdict="exact" if worst is not None and worst <= TOLERANCE else "refuse")
    return row


def straggler_sets(n: int, s: int, most: int, seed: int):
    """Every set of s stragglers when there are at most ``most``; else the n contiguous blocks
    (cyclic codes' hardest) and random sets, ``most`` in all."""
    if math.comb(n, s) <= most:
        yield from itertools.combinations(range(n), s)
        return
    for start in range(n):
        yield tuple(sorted((start + i) % n for i in range(s)))
    rng = np.random.default_rng(seed)
    for _ in range(max(0, most - n)):
        yield tuple(sorted(rng.choice(n, size=s, replace=False).tolist()))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for device_exact.json")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=int, default=0, help="ResNet width (default: the preset's 64)")
    p.add_argument("--image", type=int, default=32, help="image side (CIFAR: 32)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--jobs", type=int, default=3, help="batches (each with its own samples)")
    p.add_argument("--configs", default="8:2", help="n:s pairs, comma-separated")
    p.add_argument("--codes", default=",".join(GC_CODE_KINDS))
    p.add_argument("--modes", default="deterministic,default")
    p.add_argument("--max-sets", type=int, default=2000,
                   help="decode every straggler set when there are at most this many, else "
                        "the contiguous ones and random ones, this many in all")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if torch.device(args.device).type == "cpu":
        torch.set_num_threads(1)  # as gcode's CPU workers
    rows = []
    for config in args.configs.split(","):
        n, s = (int(v) for v in config.split(":"))
        for kind in args.codes.split(","):
            for mode in args.modes.split(","):
                row = measure(args, kind, n, s, mode)
                rows.append(row)
                print(_line(row), flush=True)
    deterministic_algorithms(False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"tolerance": TOLERANCE, "torch": torch.__version__, "rows": rows}
    (out / "device_exact.json").write_text(json.dumps(doc, indent=1))
    print(markdown_table(doc))
    return rows


def markdown_table(doc: dict) -> str:
    """The rows as docs/RESULTS.md shows them."""
    def e(v):
        return "-" if v is None else f"{v:.1e}"
    header = ("| code | n, s | algorithms | messages | worst error | median | sets (refused) | "
              "identical replicas | replica floor | ms per task | verdict |")
    lines = [header, "|" + "---|" * 11]
    for r in doc["rows"]:
        if "error" in r:
            lines.append(f"| {r['code']} | {r['n']}, {r['s']} | {r['mode']} | | refused: "
                         f"{r['error'][:80]} | | | | | | refuse |")
            continue
        lines.append(f"| {r['code']} | {r['n']}, {r['s']} | {r['mode']} | {r['message_dtype']} | "
                     f"{e(r['max_rel_error'])} | {e(r['median_rel_error'])} | {r['sets']} "
                     f"({r['refused_sets']}) | {r['identical_replicas']:.0%} | "
                     f"{e(r.get('replica_floor'))} | {1e3 * r['task_s_median']:.1f} | {r['verdict']} |")
    first = doc["rows"][0]
    lines.append(f"\n{first['model']}, batch {first['batch']}, {first['jobs']} batches per row, on "
                 f"{first['gpu'] or first['device']}"
                 + (f", torch {doc['torch']}" if doc.get("torch") else ""))
    return "\n".join(lines)


def _line(row: dict) -> str:
    if "error" in row:
        return f"| {row['code']} n={row['n']} s={row['s']} | {row['mode']} | refused: {row['error'][:120]} |"
    return (f"| {row['code']} n={row['n']} s={row['s']} | {row['mode']} | {row['message_dtype']} | "
            f"worst {row['max_rel_error']:.2e} | median {row['median_rel_error']:.2e} | "
            f"sets {row['sets']} (+{row['refused_sets']} refused) | identical replicas "
            f"{row['identical_replicas']:.0%} (floor {row['replica_floor']:.1e}) | "
            f"task {row['task_s_median'] * 1e3:.1f} ms | "
            f"{row['verdict']} |")


if __name__ == "__main__":
    main()
