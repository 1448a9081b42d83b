"""A character-level transformer language model, coded with M-SGC.

    .venv/bin/python examples/language_model.py

The text ships with gcode. A sample is a window of characters; the loss is the per-token
cross-entropy averaged over each window, one value per sample.
"""

import torch
import torch.nn.functional as F
from torch.utils.data import Subset

import gcode
from gcode.train.nets import CharTransformer
from gcode.train.presets import TEXT_PATH, TextWindows

BLOCK = 32
IDS = torch.tensor([ord(c) for c in TEXT_PATH.read_text(encoding="ascii")])
SPLIT = int(0.9 * len(IDS))


def next_char_loss(model, batch):
    logits = model(batch["tokens"])                               # (N, L, 128)
    per_token = F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), reduction="none")
    return per_token.reshape(batch["targets"].shape).mean(dim=1)  # (N,)


if __name__ == "__main__":
    result = gcode.fit(
        lambda: CharTransformer((BLOCK,), 128, dim=64, layers=2, heads=4),
        next_char_loss,
        lambda: TextWindows(IDS[:SPLIT], BLOCK),
        lambda params: torch.optim.Adam(params, lr=3e-3),
        coding=gcode.CodingConfig(scheme="msgc", B=1, W=2, lam=2, gc_code="fr"),
        scaling=gcode.ScalingConfig(workers=4),
        run=gcode.RunConfig(jobs=30, batch_size=64, eval_every=10),
        eval_dataset_fn=lambda: Subset(TextWindows(IDS[SPLIT:], BLOCK), range(256)))
    for e in result.metrics["evals"]:
        print(f"round {e['round']:3d} model {e['model']}: held-out loss {e['loss']:.3f} nats/char")
    model = result.models[-1].eval()
    text = "The coordinator "
    tokens = torch.tensor([[ord(c) for c in text]])
    with torch.no_grad():
        for _ in range(60):
            logits = model(tokens[:, -BLOCK:])[0, -1]
            tokens = torch.cat([tokens, logits.argmax().reshape(1, 1)], dim=1)
    print("greedy sample:", "".join(chr(int(t)) for t in tokens[0]))
