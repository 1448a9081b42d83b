"""Your own classifier with gcode.fit: a small CNN on scikit-learn's bundled 8x8 digits.

    .venv/bin/python examples/custom_classifier.py

Four functions say what to train; three configs say how. Every worker calls dataset_fn() once
and reads only the samples of its coded chunks; the loss is per sample (reduction="none",
examples/_common.py), which is what makes a coded task one weighted backward pass.
"""

import torch
from _common import correct, digits, per_sample_loss
from torch import nn

import gcode


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        return self.head(self.features(x))


if __name__ == "__main__":
    result = gcode.fit(
        DigitsCNN, per_sample_loss, lambda: digits(train=True, images=True),
        lambda params: torch.optim.Adam(params, lr=0.01),
        coding=gcode.CodingConfig(scheme="gc", s=1, gc_code="fr"),   # any 1 of 4 may straggle
        scaling=gcode.ScalingConfig(workers=4),
        run=gcode.RunConfig(jobs=30, batch_size=256, eval_every=10),
        eval_dataset_fn=lambda: digits(train=False, images=True), metric_fn=correct)
    print(f"{result.metrics['decoded_jobs']} jobs in {result.metrics['runtime_s']:.1f} s, "
          f"{result.metrics['stragglers']} stragglers")
    for e in result.metrics["evals"]:
        print(f"round {e['round']:3d}  held-out loss {e['loss']:.3f}  accuracy {e['accuracy']:.3f}")
    model = result.models[0]   # a plain nn.Module on the CPU
    torch.save(model.state_dict(), "digits_cnn.pt")
    print("saved digits_cnn.pt")
