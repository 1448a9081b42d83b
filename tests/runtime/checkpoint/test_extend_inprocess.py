"""Checkpoints you can use, on in-process workers: the final state is always saved (and is
``metrics["checkpoint"]``), and a finished run extended with more jobs ends bit-exact with a run
given that many jobs from the start."""

import pytest
from runtime_helpers import config

from gcode.config import ConfigError
from gcode.runtime.checkpoint import checkpoints_in, resume_config
from gcode.runtime.run import execute, preset_workload_of
from gcode.runtime.transport.inprocess import Script

SCRIPT = Script(latency_s=0.01, delays={(r, r % 4): 0.05 for r in range(0, 60, 3)})
SCHEMES = {"gc-fr": {"name": "gc", "s": 1, "gc_code": "fr"},
           "msgc-fr": {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"},
           "uncoded": {"name": "uncoded"}}


def run(cfg):
    return execute(cfg, preset_workload_of(cfg), in_process=SCRIPT)[0]


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_extending_a_finished_run_equals_the_longer_run(tmp_path, name):
    ck = {"dir": str(tmp_path / "ck"), "every": 10}
    short = run(config(scheme={**SCHEMES[name], "jobs": 30}, checkpoint=ck))
    rounds = short["rounds"]
    assert short["checkpoint"].endswith(f"round-{rounds:08d}")  # the final state, always
    assert [int(p.name[6:]) for p in checkpoints_in(tmp_path / "ck")][-1] == rounds
    longer = resume_config(tmp_path / "ck").replace(**{"scheme.jobs": 40})
    extended = run(longer)
    fresh = run(config(scheme={**SCHEMES[name], "jobs": 40}))
    assert extended["decoded_jobs"] == fresh["decoded_jobs"] == 40
    assert extended["param_checksum"] == fresh["param_checksum"]
    assert extended["checkpoint"].endswith(f"round-{fresh['rounds']:08d}")


def test_a_run_is_extended_not_shortened(tmp_path):
    run(config(scheme={**SCHEMES["gc-fr"], "jobs": 12}, checkpoint={"dir": str(tmp_path)}))
    with pytest.raises(ConfigError, match="fewer than the checkpointed run's 12"):
        run(resume_config(tmp_path).replace(**{"scheme.jobs": 8}))


def test_extension_needs_the_round_jobs_checkpoint(tmp_path):
    run(config(scheme={**SCHEMES["msgc-fr"], "jobs": 12}, checkpoint={"dir": str(tmp_path),
                                                                       "keep": 1}))
    with pytest.raises(ConfigError, match="its checkpoint at round 12 .* keep at least 2"):
        run(resume_config(tmp_path).replace(**{"scheme.jobs": 20}))


def test_load_checkpoint_returns_the_trained_models(tmp_path):
    import gcode
    from gcode.runtime.checkpoint import CheckpointError
    from gcode.train.models import make_model_factory
    cfg = config(scheme={**SCHEMES["msgc-fr"], "jobs": 10}, checkpoint={"dir": str(tmp_path)},
                 train={"model": "mlp", "optimizer": "adam"})
    workload = preset_workload_of(cfg)
    metrics, models = execute(cfg, workload, in_process=SCRIPT)
    loaded = gcode.load_checkpoint(metrics["checkpoint"], model_fn=workload.model_fn)
    assert loaded.round == metrics["rounds"] and loaded.optimizers == []
    for got, want in zip(loaded.models, models):
        for (k, a), (_, b) in zip(got.state_dict().items(), want.state_dict().items()):
            assert a.equal(b), k
    again = gcode.load_checkpoint(tmp_path, model_fn=workload.model_fn,
                                  optimizer_fn=workload.optimizer_fn)
    assert [len(o.state) for o in again.optimizers] == [len(list(m.parameters())) for m in models]
    assert sum(again.updates) == 10
    wrong = make_model_factory("mlp", (64,), 10, hidden=7)
    with pytest.raises(CheckpointError, match="model_fn builds another model .* models.0..params"):
        gcode.load_checkpoint(tmp_path, model_fn=wrong)


def test_gcode_train_resume_with_more_jobs(tmp_path):
    """gcode train --resume DIR --jobs N: the checkpoint's config with N jobs, which extends."""
    import argparse

    from gcode.cli.train import add_train_arguments, config_from_args
    cfg = config(scheme={**SCHEMES["msgc-fr"], "jobs": 12}, checkpoint={"dir": str(tmp_path)})
    run(cfg)
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    extended = config_from_args(parser.parse_args(["--resume", str(tmp_path), "--jobs", "16"]))
    assert extended.scheme.jobs == 16 and extended.checkpoint.resume == str(tmp_path)
    res = run(extended)
    assert res["decoded_jobs"] == 16 and res["resumed_from"].endswith("round-00000012")
