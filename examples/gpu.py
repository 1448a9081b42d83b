"""ResNet-18 on CIFAR-shaped images with GPU workers: 8 workers share one GPU.

    .venv/bin/python examples/gpu.py            # uses a GPU when torch sees one

ScalingConfig(gpus_per_worker=0.125) gives each of 8 workers an eighth of a GPU; their models and
batches live on it, and the coordinator decodes on its own GPU in fp64. Without a GPU the same
script runs on the CPU with 4 workers, a narrower ResNet and fewer steps, so it stays quick.
The ResNet uses GroupNorm: BatchNorm's batch statistics would tie samples together, and coding
needs a loss that is a sum over samples.
"""

import torch

import gcode
from gcode.train.nets import resnet18
from gcode.train.presets import SyntheticImages, accuracy, classification_loss

GPU = torch.cuda.is_available()

if __name__ == "__main__":
    result = gcode.fit(
        lambda: resnet18((3, 32, 32), 10, width=64 if GPU else 8),
        classification_loss,
        lambda: SyntheticImages(50_000, seed=0),           # generated from the index: no memory
        lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        coding=gcode.CodingConfig(scheme="gc", s=1, gc_code="fr"),
        scaling=gcode.ScalingConfig(workers=8 if GPU else 4, gpus_per_worker=0.125 if GPU else 0),
        run=gcode.RunConfig(jobs=40 if GPU else 6, batch_size=512 if GPU else 64,
                            eval_every=20 if GPU else 3),
        eval_dataset_fn=lambda: SyntheticImages(512, seed=1), metric_fn=accuracy)
    m = result.metrics
    t = m["timings_s_per_round"]
    print(f"{'GPU' if GPU else 'CPU'}: {m['decoded_jobs']} jobs in {m['runtime_s']:.1f} s; per round: "
          f"worker compute {1e3 * m['compute_s_per_round']:.1f} ms, coordinator overhead "
          f"{1e3 * m['overhead_s_per_round']:.1f} ms (decode {1e3 * t['decode']:.1f}, "
          f"step {1e3 * t['step']:.1f}); coordinator on {m['coordinator_device']}")
    print("held-out:", m["final_eval"])
