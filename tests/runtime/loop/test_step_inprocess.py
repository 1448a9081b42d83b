"""The update of a model (gcode.train.step) inside the loop, on in-process workers: clipping and
an LR scheduler keep a coded run equal to the uncoded run, every model's scheduler steps once per
step of that model, and a resumed run continues its schedule bit-exactly."""

import dataclasses
from functools import partial

import pytest
import torch
from runtime_helpers import config, rel

from gcode.runtime.checkpoint import checkpoints_in, read_checkpoint, resume_config
from gcode.runtime.run import execute, preset_workload_of
from gcode.runtime.transport.inprocess import Script

#: a straggler in every other round
SCRIPT = Script(latency_s=0.01, delays={(r, r % 4): 0.05 for r in range(0, 40, 2)})
SCHEDULE = partial(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
TRAIN = {"max_grad_norm": 0.05, "optimizer_params": {"momentum": 0.9}}


def run(cfg, scheduler_fn=SCHEDULE, records=None):
    workload = dataclasses.replace(preset_workload_of(cfg), scheduler_fn=scheduler_fn)
    return execute(cfg, workload, in_process=SCRIPT,
                   progress=records.append if records is not None else None)


@pytest.mark.parametrize("scheme", [{"name": "gc", "s": 1, "gc_code": "fr"},
                                    {"name": "gc", "s": 1, "gc_code": "cyclic"},
                                    {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}])
def test_coded_run_with_clipping_and_scheduler_equals_uncoded(scheme):
    records = []
    coded, models = run(config(scheme=scheme, train=TRAIN), records=records)
    plain, plain_models = run(config(scheme={"name": "uncoded"}, train=TRAIN))
    assert coded["stragglers"] > 0
    for got, want in zip(models, plain_models):
        a, b = (torch.cat([p.detach().flatten() for p in m.parameters()]) for m in (got, want))
        assert float((a - b).norm() / b.norm()) <= 1e-6
    for got, want in zip(coded["param_checksum"], plain["param_checksum"]):
        assert rel(got, want) <= 1e-6
    jobs = sorted((j for r in records for j in r["decoded"]), key=lambda j: j["job"])
    assert any(j.get("clip_factor", 1.0) < 1.0 for j in jobs)  # clipping acted
    M = coded["models"]
    for j in jobs:  # model m's k-th step (job m + kM) used lr 0.5 * 0.5^(k // 2)
        assert j["lr"] == pytest.approx(0.5 * 0.5 ** ((j["job"] // M) // 2))


def test_scheduler_state_is_checkpointed_and_resumed(tmp_path):
    scheme = {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}
    cfg = config(scheme=scheme, train=TRAIN,
                 checkpoint={"dir": str(tmp_path / "ck"), "every": 5, "keep": 10})
    full, _ = run(cfg)
    path = checkpoints_in(tmp_path / "ck")[0]
    saved = read_checkpoint(path).tree["models"]
    assert all(entry["scheduler"]["last_epoch"] > 0 for entry in saved)
    resumed, _ = run(resume_config(path).replace(**{"checkpoint.dir": None}))
    assert resumed["param_checksum"] == full["param_checksum"]
    with pytest.raises(Exception, match="scheduler_fn must be given as in the checkpointed run"):
        run(resume_config(path).replace(**{"checkpoint.dir": None}), scheduler_fn=None)


def test_bf16_runs_coded_and_fp64_messages_equal_uncoded():
    """precision bf16: the workers' forward runs under autocast (the run differs from fp32), a
    coded run passes the startup probe, and a code with fp64 messages (chunk by chunk, as
    uncoded) ends equal to the uncoded run."""
    bf16 = {**TRAIN, "precision": "bf16", "model": "mlp"}
    out = {}
    for name, scheme, train in (("fr", {"name": "gc", "s": 1, "gc_code": "fr"}, bf16),
                                ("cyclic", {"name": "gc", "s": 1, "gc_code": "cyclic"}, bf16),
                                ("uncoded", {"name": "uncoded"}, bf16),
                                ("fp32", {"name": "uncoded"}, {**bf16, "precision": "fp32"})):
        out[name] = run(config(scheme=scheme, train=train))[0]["param_checksum"][0]
    assert out["fr"] != out["uncoded"] and rel(out["fr"], out["uncoded"]) < 0.05
    assert rel(out["cyclic"], out["uncoded"]) <= 1e-6
    assert out["uncoded"] != out["fp32"]
