"""A regression with dict batches and a mean-squared error, on data generated from its index.

    .venv/bin/python examples/regression.py

The dataset never exists in memory: item i is computed from i on the worker that needs it, so
its size costs nothing. Batches are dicts, collated by torch's default_collate.
"""

import math

import torch
from torch import nn
from torch.utils.data import Dataset

import gcode


class Waves(Dataset):
    """Item i: features x ~ N(0, I) seeded by i, target sin(x0) + x1·x2 (plus small noise)."""

    def __init__(self, size: int, offset: int = 0):
        self.size, self.offset = size, offset

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.offset + i)
        x = torch.randn(8, generator=g)
        y = torch.sin(x[0]) + x[1] * x[2] + 0.05 * torch.randn(1, generator=g)[0]
        return {"features": x, "target": y.reshape(1)}


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 1))

    def forward(self, batch):
        return self.net(batch["features"])


def squared_error(model, batch):
    return (model(batch) - batch["target"]).square().mean(dim=1)   # one loss per sample


if __name__ == "__main__":
    result = gcode.fit(
        Regressor, squared_error, lambda: Waves(1_000_000),
        lambda params: torch.optim.Adam(params, lr=0.01),
        # SR-SGC tolerates bursts: B=1 round, at most lam=2 distinct stragglers per W=2 rounds
        coding=gcode.CodingConfig(scheme="srsgc", B=1, W=2, lam=2),
        scaling=gcode.ScalingConfig(workers=4),
        run=gcode.RunConfig(jobs=40, batch_size=256, eval_every=10,
                            inject=gcode.InjectConfig(model="bursty", params={
                                "B": 1, "W": 2, "lam": 2, "base": 0.01, "slowdown": 5.0})),
        eval_dataset_fn=lambda: Waves(512, offset=10**9))
    m = result.metrics
    print(f"{m['decoded_jobs']} jobs, {m['models']} models round-robin (T={m['delay_T']}), "
          f"{m['stragglers']} stragglers, {m['waits']} waits, {m['runtime_s']:.1f} s")
    for e in m["final_eval"]:
        print(f"model {e['model']}: held-out RMSE {math.sqrt(e['loss']):.3f}")
