"""Models and losses that couple the samples of a batch (issue 27), and sound ones beside them,
shared by the exactness probe's tests with and without Ray."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from gcode.train import Workload


class Blobs(Dataset):
    """Item i = (x, label), computed from i alone."""

    def __len__(self):
        return 960

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(int(i))
        label = int(i) % 3
        return torch.randn(6, generator=g) + label, label


def batchnorm_net():
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8, track_running_stats=False),
                         nn.ReLU(), nn.Linear(8, 3))


def dropout_net():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))


def layernorm_net():
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))


def cross_entropy(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y, reduction="none")


def info_nce(model, batch):
    """An in-batch contrastive loss: each sample's positive is its own second view, every other
    sample of the batch a negative (per-sample losses, each depending on the whole batch)."""
    x, _ = batch
    a = F.normalize(model(x), dim=1)
    b = F.normalize(model(x.flip(1)), dim=1)
    logits = a @ b.T / 0.5
    return F.cross_entropy(logits, torch.arange(len(x)), reduction="none")


def sgd(params):
    return torch.optim.SGD(params, lr=0.1)


def workload(model_fn, loss_fn=cross_entropy):
    return Workload(model_fn, loss_fn, Blobs, sgd)
