"""How often the canonical-sum mode's one rounding to fp32 absorbs a code's fp64 decode error.

    .venv/bin/python benchmarks/exact_blocks_codes.py [--steps 4] [--batch 96] [--block 6]

With ``RunConfig(exact_blocks=K)`` a worker's message is an fp64 sum of c x (fp32 block
gradient) and the decode an fp64 sum over workers; the decoded sum is then rounded to fp32 once.
Uncoded and FR codes add with coefficient 1, so (barring an exponent spread over ~29 bits) every
decode is the exact sum and rounds to the same fp32 bits as the uncoded run's. Group and cyclic
codes weigh messages with other coefficients: the fp64 decode carries rounding of about 1e-16
relative, and the fp32 rounding of a coordinate changes when that error crosses a rounding
boundary. This script measures it on real gradients: the per-block gradients of a GroupNorm
ResNet-18 (width 8) on CIFAR-shaped images at ``--steps`` parameter states (a few SGD steps
apart), every code at (n, s) in {(4, 1), (8, 2), (16, 3)}, decoded from every straggler set of
size s (or 200 drawn at random where there are more). Reported per code: the decodes, those
whose fp32 gradient differs anywhere from the uncoded run's, the share of coordinates that
differ, and the worst fp64 decode error. Results: benchmarks/results/exact_blocks_codes.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gcode.codes import make_gc_code
from gcode.codes.chunking import chunk_boundaries
from gcode.train.nets import resnet18
from gcode.train.presets import SyntheticImages

OUT = Path(__file__).resolve().parent / "results" / "exact_blocks_codes.json"
CODES = ("fr", "group", "cyclic")
SIZES = ((4, 1), (8, 2), (16, 3))
MAX_SETS = 200


def block_gradients(model, data, batch: int, block: int) -> np.ndarray:
    """(batch / block, d) fp32: each block's summed per-sample gradient, one backward each."""
    rows = []
    for start in range(0, batch, block):
        x, y = zip(*(data[i] for i in range(start, start + block)))
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(torch.stack(x)), torch.tensor(y), reduction="sum").backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]).numpy().copy())
    return np.stack(rows)


def messages(code, parts: list[slice], blocks: np.ndarray) -> np.ndarray:
    """Each worker's fp64 message: Σ over its parts k, over part k's blocks b, of c_k·g_b, added
    in that order (as gcode.train.compute does)."""
    out = np.zeros((code.n, blocks.shape[1]))
    for w in range(code.n):
        for k, c in zip(*code.row(w)):
            for b in range(parts[k].start, parts[k].stop):
                out[w] += c * blocks[b].astype(np.float64)
    return out


def straggler_sets(n: int, s: int, rng) -> list[tuple[int, ...]]:
    sets = list(itertools.combinations(range(n), s))
    if len(sets) > MAX_SETS:
        sets = [sets[i] for i in rng.choice(len(sets), MAX_SETS, replace=False)]
    return sets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--block", type=int, default=6)
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = resnet18((3, 32, 32), 10, width=8)
    data = SyntheticImages(args.batch, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    nblocks = args.batch // args.block
    stats = {}
    for step in range(args.steps):
        blocks = block_gradients(model, data, args.batch, args.block)
        reference = blocks.astype(np.float64).sum(axis=0)   # any order: exact unless a wide spread
        canonical = reference.astype(np.float32)
        for (n, s), kind in itertools.product(SIZES, CODES):
            code = make_gc_code(kind, n, s)
            bounds = chunk_boundaries(code.part_fractions, nblocks, code.part_groups)
            msgs = messages(code, bounds, blocks)
            row = stats.setdefault(f"{kind} n={n} s={s}", {"decodes": 0, "decodes_differing": 0,
                                                          "coordinates_differing": 0, "coordinates": 0,
                                                          "max_fp64_rel_error": 0.0})
            for stragglers in straggler_sets(n, s, rng):
                arrived = np.ones(n, dtype=bool)
                arrived[list(stragglers)] = False
                workers, coefficients = code.decode_vector(arrived)
                decoded = np.zeros_like(reference)
                for w, a in zip(workers, coefficients):
                    decoded += a * msgs[w]
                differ = int(np.count_nonzero(decoded.astype(np.float32) != canonical))
                row["decodes"] += 1
                row["decodes_differing"] += differ > 0
                row["coordinates_differing"] += differ
                row["coordinates"] += decoded.size
                row["max_fp64_rel_error"] = max(row["max_fp64_rel_error"], float(
                    np.linalg.norm(decoded - reference) / np.linalg.norm(reference)))
        model.zero_grad(set_to_none=True)
        for p, g in zip(model.parameters(), torch.from_numpy(canonical / args.batch).split(
                [p.numel() for p in model.parameters()])):
            p.grad = g.reshape(p.shape).clone()
        opt.step()
    print(f"{'code':18} {'decodes':>7} {'differing':>9} {'coords differing':>16} {'fp64 rel err':>12}")
    for name, row in stats.items():
        row["coordinate_share_differing"] = row["coordinates_differing"] / row["coordinates"]
        print(f"{name:18} {row['decodes']:7d} {row['decodes_differing']:9d} "
              f"{row['coordinate_share_differing']:16.2e} {row['max_fp64_rel_error']:12.1e}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"model": "resnet18 width 8 (GroupNorm), CIFAR-shaped synthetic images",
                               "num_params": int(sum(p.numel() for p in model.parameters())),
                               "batch": args.batch, "block": args.block, "steps": args.steps,
                               "codes": stats}, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
