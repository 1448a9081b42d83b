"""Load a checkpoint's trained model for inference (no pickle is read).

    .venv/bin/python examples/load_checkpoint.py

gcode.load_checkpoint builds each model with your model_fn and loads its saved parameters;
optimizer_fn= (and scheduler_fn=) also return the optimizers, to go on training elsewhere.
"""

import tempfile

import torch
from _common import digits, per_sample_loss
from torch import nn

import gcode


def classifier():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


if __name__ == "__main__":
    folder = tempfile.mkdtemp()
    result = gcode.fit(classifier, per_sample_loss, lambda: digits(train=True),
                       lambda params: torch.optim.Adam(params, lr=0.01),
                       scaling=gcode.ScalingConfig(workers=2),
                       run=gcode.RunConfig(jobs=20, batch_size=256,
                                           checkpoint=gcode.CheckpointConfig(dir=folder)),
                       progress=False)
    loaded = gcode.load_checkpoint(result.checkpoint, model_fn=classifier)
    model = loaded.models[0].eval()
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  result.models[0].state_dict().values()))
    x, y = digits(train=False).tensors
    with torch.no_grad():
        accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
    print(f"loaded {result.checkpoint} (round {loaded.round}, {loaded.updates[0]} steps); "
          f"equal to result.models: {same}; held-out accuracy {accuracy:.3f}")
