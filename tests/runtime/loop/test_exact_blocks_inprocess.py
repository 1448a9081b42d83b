"""The canonical-sum mode (``train.exact_blocks``) on in-process workers: uncoded on 4 and on 3
workers, GC-FR and M-SGC under stragglers, with Adam and clipping, end with the same parameters
bit for bit (tests/runtime/test_exact_blocks_live.py does the same on Ray, both planes, bf16)."""

import torch
from runtime_helpers import config

from gcode.runtime.run import execute, preset_workload_of
from gcode.runtime.transport.inprocess import Script

SCRIPT = Script(latency_s=0.01, delays={(r, r % 4): 0.05 for r in range(0, 12, 2)})
TRAIN = {"model": "mlp", "optimizer": "adam", "lr": 0.01, "max_grad_norm": 0.5, "exact_blocks": 10}


def params(scheme, workers=4):
    cfg = config(scheme={**scheme, "jobs": 8}, train=TRAIN,
                 cluster={"workers": workers, "round_timeout_s": 60})
    metrics, models = execute(cfg, preset_workload_of(cfg), in_process=SCRIPT)
    assert metrics["message_dtype"] == "float64" and metrics["max_decode_rel_error"] == 0.0
    return metrics, [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in models]


def test_every_scheme_and_worker_count_trains_the_same_bits():
    _, reference = params({"name": "uncoded"})
    for scheme, workers in (({"name": "uncoded"}, 3), ({"name": "gc", "s": 1, "gc_code": "fr"}, 4),
                            ({"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}, 4)):
        metrics, got = params(scheme, workers)
        assert scheme["name"] == "uncoded" or metrics["stragglers"] > 0
        for a, b in zip(got, reference, strict=True):
            assert torch.equal(a, b), (scheme, workers, float((a - b).abs().max()))


def test_a_resumed_run_continues_bit_for_bit(tmp_path):
    """A checkpoint of a run in the canonical-sum mode (jobs in flight with fp64 messages and
    block-aligned chunks) resumes to the uninterrupted run's parameters."""
    from gcode.runtime.checkpoint import checkpoints_in, resume_config
    scheme = {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr", "jobs": 8}
    cfg = config(scheme=scheme, train=TRAIN, checkpoint={"dir": str(tmp_path), "every": 3, "keep": 10})
    full, _ = execute(cfg, preset_workload_of(cfg), in_process=SCRIPT)
    resumed_cfg = resume_config(checkpoints_in(tmp_path)[0]).replace(**{"checkpoint.dir": None})
    resumed, _ = execute(resumed_cfg, preset_workload_of(resumed_cfg), in_process=SCRIPT)
    assert resumed["param_checksum"] == full["param_checksum"]
