"""Models of the hostile-model catalogue (tests/test_hostile_models.py and
tests/runtime/test_hostile_models_live.py): buffers drawn from seeded and unseeded RNGs, a
frozen bias, and a forward pass that changes a buffer."""

import numpy as np
import torch
from torch import nn


class Projected(nn.Module):
    """forward = lin(x @ proj + shift): ``proj`` drawn from torch's RNG (gcode seeds it per
    model, so the workers' seed-0 replicas draw another); a frozen bias of ones."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.register_buffer("proj", torch.randn(4, 4))
        self.register_buffer("shift", torch.zeros(4))
        nn.init.ones_(self.lin.bias)
        self.lin.bias.requires_grad_(False)

    def forward(self, x):
        return self.lin(x @ self.proj + self.shift)


class Unseeded(Projected):
    """``shift`` from numpy's unseeded RNG: every process, and every run, draws another."""

    def __init__(self):
        super().__init__()
        self.shift.copy_(torch.from_numpy(np.random.randn(4).astype(np.float32)))


class Counting(Projected):
    """Counts its forward passes in a buffer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        self.calls += 1
        return super().forward(x)
