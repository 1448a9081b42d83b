"""Your own classifier with gcode.fit: a small CNN on scikit-learn's bundled 8x8 digits.

    .venv/bin/python examples/custom_classifier.py

Four functions say what to train; three configs say how. Every worker calls dataset_fn() once
and reads only the samples of its coded chunks; the loss is per sample (reduction="none"),
which is what makes a coded task one weighted backward pass.
"""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

import gcode


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        return self.head(self.features(x))


def digits(train: bool):
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(labels)
    keep = slice(0, 1500) if train else slice(1500, None)
    return TensorDataset(x[keep], y[keep])


def per_sample_loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y, reduction="none")


def correct(model, batch):
    x, y = batch
    return model(x).argmax(dim=1) == y


if __name__ == "__main__":
    result = gcode.fit(
        DigitsCNN, per_sample_loss, lambda: digits(train=True),
        lambda params: torch.optim.Adam(params, lr=0.01),
        coding=gcode.CodingConfig(scheme="gc", s=1, gc_code="fr"),   # any 1 of 4 may straggle
        scaling=gcode.ScalingConfig(workers=4),
        run=gcode.RunConfig(jobs=30, batch_size=256, eval_every=10),
        eval_dataset_fn=lambda: digits(train=False), metric_fn=correct)
    print(f"{result.metrics['decoded_jobs']} jobs in {result.metrics['runtime_s']:.1f} s, "
          f"{result.metrics['stragglers']} stragglers")
    for e in result.metrics["evals"]:
        print(f"round {e['round']:3d}  held-out loss {e['loss']:.3f}  accuracy {e['accuracy']:.3f}")
    model = result.models[0]   # a plain nn.Module on the CPU
    torch.save(model.state_dict(), "digits_cnn.pt")
    print("saved digits_cnn.pt")
