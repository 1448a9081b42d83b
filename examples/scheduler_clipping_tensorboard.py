"""A warm-up + cosine learning-rate schedule, gradient clipping, TensorBoard and early stopping.

    .venv/bin/python examples/scheduler_clipping_tensorboard.py
    tensorboard --logdir runs/tb          # pip install 'gcode[tensorboard]'

scheduler_fn builds each model's scheduler over its optimizer; gcode steps it once per step of
that model. max_grad_norm clips the decoded gradient, so the coded run clips exactly as an
uncoded one would. Without the tensorboard package the run goes on without the logger.
"""

import torch
from _common import digits, per_sample_loss
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

import gcode
from gcode.callbacks import EarlyStopping, TensorBoardLogger

JOBS, WARMUP = 40, 5


def mlp():
    return nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 10))


def warmup_cosine(optimizer):
    return SequentialLR(optimizer, [LinearLR(optimizer, start_factor=0.1, total_iters=WARMUP),
                                    CosineAnnealingLR(optimizer, T_max=JOBS - WARMUP)], [WARMUP])


if __name__ == "__main__":
    callbacks = [EarlyStopping(patience=3)]
    try:
        callbacks.append(TensorBoardLogger("runs/tb"))
    except ImportError as exc:
        print(f"(no TensorBoard: {exc})")
    result = gcode.fit(
        mlp, per_sample_loss, lambda: digits(train=True),
        lambda params: torch.optim.AdamW(params, lr=0.01, weight_decay=0.01),
        scheduler_fn=warmup_cosine, callbacks=callbacks,
        coding=gcode.CodingConfig(scheme="gc", s=1),
        scaling=gcode.ScalingConfig(workers=4),
        run=gcode.RunConfig(jobs=JOBS, batch_size=256, eval_every=5, max_grad_norm=1.0),
        eval_dataset_fn=lambda: digits(train=False))
    m = result.metrics
    print(f"{m['decoded_jobs']} jobs, stopped early: {m['stopped']} ({m.get('stop_reason') or '-'})")
    for e in m["evals"]:
        print(f"after {e['updates']:3d} steps: held-out loss {e['loss']:.3f}")
