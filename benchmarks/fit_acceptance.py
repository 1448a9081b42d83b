"""Issue 30's acceptance: a script written as a Ray Train user would, run with gcode.fit.

    .venv/bin/python benchmarks/fit_acceptance.py [--jobs 16] [--workers 4] [--exact-blocks 8]

A ResNet-style CNN (GroupNorm residual blocks) on a lazily read dataset (each 3x16x16 image is
generated from its index when a worker reads it), AdamW with a linear warm-up into a cosine
schedule, clipping at global norm 1.0, TensorBoard logging and early stopping on the held-out
loss; M = 2 models (M-SGC's T = 1 needs two; every run trains the same two). Each run is
uncoded (on 4 and on 2 workers), GC (FR, s = 1), GC (cyclic, s = 1) or M-SGC (B=1, W=2, lam=1,
FR) with injected bursty stragglers, in fp32 and in bf16, in the canonical-sum mode
(``RunConfig(exact_blocks=K)``: one backward pass per block of K samples, fp64 messages and
decode, one rounding to fp32). Reported per run: the final parameters' largest relative
difference (and largest absolute one) from the uncoded 4-worker run of the same precision and
mode (every model), the largest decoded-gradient error (check_decode), the stragglers, and
whether early stopping fired. Also checked: gcode.load_checkpoint returns the run's models and
its run log names the model class and the optimizer. Results:
benchmarks/results/fit_acceptance.json.

For contrast, one pair of rows runs the default mode (one backward pass per task, fp32
messages): there GC-FR on 4 workers splits each batch in halves where uncoded on 4 workers
splits it in quarters, and fp32 summation order alone, amplified by AdamW on near-zero gradient
coordinates, moves the final parameters by about 1e-4.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

import gcode
from gcode.callbacks import EarlyStopping, TensorBoardLogger

OUT = Path(__file__).resolve().parent / "results" / "fit_acceptance.json"
WARMUP = 3


class GeneratedImages(torch.utils.data.Dataset):
    """3x16x16 images made from their index when read (nothing is held): class k's images are
    a noisy pattern of frequency k."""

    def __init__(self, size: int, offset: int = 0):
        self.size, self.offset = size, offset

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.offset + int(i))
        label = int(torch.randint(0, 4, (), generator=g))
        grid = torch.linspace(0, 3.14159 * (label + 1), 16)
        image = torch.sin(grid[None, :, None] + grid[None, None, :]).expand(3, 16, 16)
        return image + 0.5 * torch.randn(3, 16, 16, generator=g), label


class Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(4, channels),
                                  nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.GroupNorm(4, channels))

    def forward(self, x):
        return F.relu(x + self.body(x))


class SmallResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU())
        self.blocks = nn.Sequential(Block(16), nn.Conv2d(16, 32, 3, stride=2, padding=1), Block(32))
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def per_sample_loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y, reduction="none")


def correct(model, batch):
    x, y = batch
    return model(x).argmax(dim=1) == y


def adamw(params):
    return torch.optim.AdamW(params, lr=3e-3, weight_decay=0.05)


def warmup_cosine(jobs: int, models: int):
    steps = jobs // models

    def make(optimizer):
        return SequentialLR(optimizer, [LinearLR(optimizer, 0.1, 1.0, WARMUP),
                                        CosineAnnealingLR(optimizer, steps - WARMUP)], [WARMUP])
    return make


SCHEMES = {"uncoded": {"scheme": "uncoded"}, "gc": {"scheme": "gc", "s": 1, "gc_code": "fr"},
           "gc-cyclic": {"scheme": "gc", "s": 1, "gc_code": "cyclic"},
           "msgc": {"scheme": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}}
STRAGGLERS = gcode.InjectConfig(model="bursty", params={"B": 1, "W": 2, "lam": 1, "base": 0.02,
                                                        "slowdown": 5.0, "straggle_prob": 0.5})
#: (scheme, divisor of --workers) of each mode's rows; the first is the reference of its precision
#: and mode (uncoded on half the workers splits a batch as GC-FR s=1 on all of them does)
EXACT_ROWS = (("uncoded", 1), ("uncoded", 2), ("gc", 1), ("msgc", 1), ("gc-cyclic", 1))
DEFAULT_ROWS = (("uncoded", 1), ("gc", 1))


def run(name, precision, workers, jobs, pool, tmp: Path, exact_blocks: int, extra=None):
    tag = f"{name}-{precision}-{workers}-{exact_blocks}"
    stop = EarlyStopping(patience=3)
    run_cfg = gcode.RunConfig(jobs=jobs, batch_size=64, models=2, seed=1, eval_every=4,
                              max_grad_norm=1.0, precision=precision, check_decode=True,
                              exact_blocks=exact_blocks,
                              inject=STRAGGLERS if name != "uncoded" else None, **(extra or {}))
    t0 = time.perf_counter()
    result = gcode.fit(SmallResNet, per_sample_loss, lambda: GeneratedImages(2048),
                       adamw, scheduler_fn=warmup_cosine(jobs, 2),
                       coding=gcode.CodingConfig(**SCHEMES[name]),
                       scaling=gcode.ScalingConfig(workers=workers), run=run_cfg,
                       eval_dataset_fn=lambda: GeneratedImages(256, offset=10**6),
                       metric_fn=correct, callbacks=[stop, TensorBoardLogger(tmp / "tb" / tag)],
                       progress=False, pool=pool)
    m = result.metrics
    return result, {"mode": "exact_blocks" if exact_blocks else "default (summation-order contrast)",
                    "exact_blocks": exact_blocks, "scheme": name, "precision": precision,
                    "workers": workers, "models": m["models"], "steps_per_model": m["updates_per_model"],
                    "message_dtype": m["message_dtype"],
                    "stragglers": m["stragglers"], "waits": m["waits"],
                    "max_decode_rel_error": m["max_decode_rel_error"],
                    "stopped_early": m["stopped"], "final_eval_loss": [e["loss"] for e in m["final_eval"]],
                    "compute_s_per_round": m["compute_s_per_round"], "wall_s": time.perf_counter() - t0}


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().double() for p in model.parameters()])


def rel_diff(models, reference) -> float:
    return max(float((flat(a) - flat(b)).norm() / flat(b).norm()) for a, b in zip(models, reference))


def abs_diff(models, reference) -> float:
    return max(float((flat(a) - flat(b)).abs().max()) for a, b in zip(models, reference))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--exact-blocks", type=int, default=8, help="samples per canonical block")
    args = ap.parse_args()
    import os

    import ray

    from gcode.config import ClusterConfig
    from gcode.runtime import start_workers
    from gcode.telemetry.report import config_lines
    from gcode.telemetry.runlog import read_run_log
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    pool = start_workers(ClusterConfig(workers=args.workers, max_restarts=10))
    plan = [("fp32", args.exact_blocks, EXACT_ROWS), ("bf16", args.exact_blocks, EXACT_ROWS),
            ("fp32", 0, DEFAULT_ROWS)]
    rows, checks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for precision, blocks, runs in plan:
            reference = None
            for name, divisor in runs:
                workers = args.workers // divisor
                checked = (name, precision, workers, blocks) == ("gc", "fp32", args.workers,
                                                                 args.exact_blocks)
                extra = ({"checkpoint": gcode.CheckpointConfig(dir=str(tmp / "ck")),
                          "logs": gcode.LogConfig(run_log=str(tmp / "run"))} if checked else None)
                result, row = run(name, precision, workers, args.jobs, pool, tmp, blocks, extra)
                reference = reference or result.models
                row["param_rel_diff_vs_uncoded"] = rel_diff(result.models, reference)
                row["param_max_abs_diff_vs_uncoded"] = abs_diff(result.models, reference)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if checked:
                    loaded = gcode.load_checkpoint(result.checkpoint, model_fn=SmallResNet)
                    checks["load_checkpoint_equals_result_models"] = abs_diff(loaded.models,
                                                                              result.models) == 0
                    line = next(x for x in config_lines(read_run_log(tmp / "run.pb").config)
                                if x.startswith("training:"))
                    checks["run_log_training_line"] = line
                    checks["run_log_names_model_and_optimizer"] = ("SmallResNet" in line
                                                                   and "AdamW" in line)
        checks["tensorboard_event_files"] = len(list((tmp / "tb").rglob("events.out.*")))
    pool.kill()
    ray.shutdown()
    print(f"\n{'mode':8} {'scheme':9} {'prec':5} {'n':>2} {'steps/model':>11} {'strag':>5} "
          f"{'max decode err':>14} {'params vs uncoded-4':>19} {'max abs':>8} {'compute ms':>10} "
          f"{'wall s':>6}")
    for r in rows:
        print(f"{'exact' if r['exact_blocks'] else 'default':8} {r['scheme']:9} {r['precision']:5} "
              f"{r['workers']:2d} {r['steps_per_model']!s:>11} {r['stragglers']:5d} "
              f"{r['max_decode_rel_error'] or 0:14.2e} {r['param_rel_diff_vs_uncoded']:19.2e} "
              f"{r['param_max_abs_diff_vs_uncoded']:8.1e} {1e3 * r['compute_s_per_round']:10.1f} "
              f"{r['wall_s']:6.1f}")
    for k, v in checks.items():
        print(f"{k}: {v}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"jobs": args.jobs, "workers": args.workers, "batch_size": 64,
                               "exact_blocks": args.exact_blocks, "runs": rows, "checks": checks,
                               "machine": f"{torch.get_num_threads()} torch threads, CPU, load "
                                          f"average {os.getloadavg()[0]:.1f} at the end"},
                              indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
