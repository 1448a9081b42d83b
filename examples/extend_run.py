"""Extend a finished run: 30 jobs, then 10 more from its final checkpoint, equal bit for bit to
a run given 40 jobs from the start.

    .venv/bin/python examples/extend_run.py

The same from the command line: gcode train --resume DIR --jobs 40. One ray.init() here serves
all three runs (gcode.fit uses a Ray this process already started).
"""

import tempfile

import ray
import torch
from torch import nn
from torch.utils.data import TensorDataset

import gcode


def dataset():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 16, generator=g)
    return TensorDataset(x, x @ torch.linspace(-1, 1, 16) + 0.1 * torch.randn(2000, generator=g))


def squared_error(model, batch):
    x, y = batch
    return (model(x).squeeze(1) - y) ** 2


def fit(jobs, checkpoint):
    return gcode.fit(lambda: nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1)),
                     squared_error, dataset, lambda params: torch.optim.Adam(params, lr=0.01),
                     coding=gcode.CodingConfig(scheme="gc", s=1, gc_code="fr"),
                     scaling=gcode.ScalingConfig(workers=4),
                     run=gcode.RunConfig(jobs=jobs, batch_size=200, checkpoint=checkpoint),
                     progress=False)


if __name__ == "__main__":
    ray.init(num_cpus=2, include_dashboard=False)
    folder = tempfile.mkdtemp()
    first = fit(30, gcode.CheckpointConfig(dir=folder))
    print(f"30 jobs: final checkpoint {first.checkpoint}")
    extended = fit(40, gcode.CheckpointConfig(dir=folder, resume=folder))
    fresh = fit(40, None)
    same = extended.metrics["param_checksum"] == fresh.metrics["param_checksum"]
    print(f"extended to {extended.metrics['decoded_jobs']} jobs; equal to a 40-job run: {same}")
    ray.shutdown()
    if not same:
        raise SystemExit("the extended run differs from the 40-job run")
