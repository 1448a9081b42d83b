"""What several examples share: scikit-learn's bundled 8x8 digits as a torch Dataset, the
per-sample cross-entropy that coding needs, and each sample's correctness (held-out accuracy).

Ray puts the running script's folder on its workers' import path, so the workers import this
module as the example scripts do (on a cluster: the same folder on every node).
"""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset


def digits(train: bool, images: bool = False) -> TensorDataset:
    """The first 1500 digits (``train``) or the other 297: 64 pixels in [0, 1] per sample, or
    1x8x8 images with ``images``, and the labels 0-9."""
    pixels, labels = load_digits(return_X_y=True)
    x = torch.tensor(pixels / 16.0, dtype=torch.float32)
    x = x.reshape(-1, 1, 8, 8) if images else x
    keep = slice(0, 1500) if train else slice(1500, None)
    return TensorDataset(x[keep], torch.tensor(labels)[keep])


def per_sample_loss(model, batch):
    """One cross-entropy per sample (reduction="none"): a coded task is then one weighted
    backward pass."""
    x, y = batch
    return F.cross_entropy(model(x), y, reduction="none")


def correct(model, batch):
    """Whether each held-out sample is classified right (gcode averages it into accuracy)."""
    x, y = batch
    return model(x).argmax(dim=1) == y
