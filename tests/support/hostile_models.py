"""Models of the hostile-model catalogue (tests/train/test_hostile_models.py and
tests/runtime/test_hostile_models_live.py): buffers drawn from seeded and unseeded RNGs, a
frozen bias, a forward pass that changes a buffer; the data, loss and optimizer they train
with, and the plain-torch reference run."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from gcode.runtime.data import job_indices, model_seed
from gcode.train import build_model

JOBS, BATCH, SEED, MODELS = 6, 48, 5, 2  # MODELS: the default; M-SGC (T = 1) runs need 3


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


class Unused(nn.Module):
    """``spare`` is never called; ``head`` is: ``spare`` must never get a gradient (issue 29)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.spare = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(x)


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


class Indexed(Dataset):
    """480 regression items, each generated from its index."""

    def __len__(self):
        return 480

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(int(i))
        x = torch.randn(4, generator=g)
        return x, torch.stack([x.sum(), x[0] - x[3]])


def mse(model, batch):
    return F.mse_loss(model(batch[0]), batch[1], reduction="none").mean(1)


def sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.5, weight_decay=0.5)


def plain_torch(trained):
    """Each model trained in this process by plain torch on gcode's batches (job t: model t mod
    M), from gcode's initial parameters and with the buffers gcode's coordinator built."""
    data = Indexed()
    out = []
    for m, returned in enumerate(trained):
        model = build_model(Unseeded, model_seed(SEED, m))
        model.load_state_dict({n: b for n, b in returned.named_buffers()}, strict=False)
        opt = sgd(model.parameters())
        for t in range(m, JOBS, len(trained)):
            items = [data[int(i)] for i in job_indices(SEED, t, BATCH, len(data))]
            x, y = torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
            opt.zero_grad()
            (mse(model, (x, y)).sum() / BATCH).backward()
            opt.step()
        out.append(model)
    return out


def rel_diff(a, b):
    return max(float((p.detach().double() - q.detach().double()).norm() / q.detach().double().norm())
               for x, y in zip(a, b) for p, q in zip(x.parameters(), y.parameters()))
