"""The public configs of gcode.fit map one to one onto TrainConfig, and errors name their fields."""

import subprocess
import sys

import pytest

import gcode
from gcode.api import from_train_config, public_field, to_train_config
from gcode.config import ConfigError, Fault, from_dict


def test_import_gcode_imports_neither_ray_nor_torch():
    code = "import sys, gcode; assert 'ray' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_round_trip_is_lossless():
    cfg = from_dict({
        "scheme": {"name": "srsgc", "B": 2, "W": 3, "lam": 3, "gc_code": "fr", "jobs": 17},
        "policy": {"name": "partial", "mu": 0.5},
        "cluster": {"workers": 6, "gpus_per_worker": 0.25, "worker_cpus": 0.5, "decode_threads": 3},
        "train": {"model": "cnn", "dataset": "synthetic", "dataset_params": {"num_features": 5},
                  "batch_size": 64, "seed": 9, "models": 3, "lr": 0.2, "optimizer": "sgd",
                  "optimizer_params": {"momentum": 0.9}, "eval_every": 4, "check_decode": True},
        "inject": {"model": "bursty", "params": {"B": 1, "W": 2, "lam": 2, "base": 0.01}},
        "log": {"jsonl": "a.jsonl"}, "checkpoint": {"dir": "ck", "every": 3},
        "faults": [{"round": 1, "worker": 2, "kind": "nan"}]})
    assert to_train_config(*from_train_config(cfg)) == cfg


def test_defaults_match_gcode_train():
    from gcode.config import TrainConfig
    cfg = to_train_config(gcode.CodingConfig(), gcode.ScalingConfig(), gcode.RunConfig())
    assert cfg.scheme == TrainConfig().scheme and cfg.cluster == TrainConfig().cluster


@pytest.mark.parametrize("coding, scaling, run, match", [
    ({"scheme": "msgc", "W": 1}, {}, {}, "coding.W: must be > B=1"),
    ({"scheme": "gc", "s": 9}, {}, {}, r"coding.s: must satisfy 0 <= s < workers=4"),
    ({"scheme": "gc", "policy": "deadline"}, {}, {}, "coding.deadline: is required"),
    ({"policy": "deadline"}, {}, {}, "coding.policy: scheme 'auto' picks how rounds end"),
    ({}, {"workers": 0}, {}, "scaling.workers: must be >= 1"),
    ({}, {"gpus_per_worker": -1.0}, {}, "scaling.gpus_per_worker: must be >= 0"),
    ({}, {"cpus_per_worker": 0.0}, {}, "scaling.cpus_per_worker"),
    ({}, {"transport": "tcp"}, {}, "scaling.transport: must be one of"),
    ({}, {"prefetch": "always"}, {}, "scaling.prefetch: must be one of"),
    ({}, {}, {"jobs": 0}, "run.jobs: must be >= 1"),
    ({}, {}, {"eval_every": 0}, "run.eval_every: must be >= 1"),
    ({}, {}, {"dispatch": "early"}, "run.dispatch: must be one of"),
    ({"scheme": "srsgc"}, {}, {"dispatch": "arrival"}, "run.dispatch: 'arrival' needs a scheme"),
    ({}, {}, {"batch_size": "big"}, "run.batch_size: must be an integer"),
    ({}, {}, {"batch_size": 64, "exact_blocks": 5},
     r"^run.exact_blocks: must divide run.batch_size=64 \(each job's batch is cut into whole "
     r"blocks\), got 5$"),
    ({}, {}, {"exact_blocks": -1}, "run.exact_blocks: must be >= 0"),
    ({}, {}, {"inject": gcode.InjectConfig(model="bursty", params={"B": 0})}, "run.inject.params"),
    ({}, {}, {"faults": (Fault(0, 9, "nan"),)}, r"run.faults\[0\].worker"),
    ({}, {}, {"tags": {"colour": "red"}}, "run.tags.colour: unknown tag"),
])
def test_errors_name_the_public_field(coding, scaling, run, match):
    with pytest.raises(ConfigError, match=match):
        to_train_config(gcode.CodingConfig(**coding), gcode.ScalingConfig(**scaling),
                        gcode.RunConfig(**run))


def test_public_field_names():
    assert public_field("scheme.name") == "coding.scheme"
    assert public_field("cluster.worker_cpus") == "scaling.cpus_per_worker"
    assert public_field("log.run_log") == "run.logs.run_log"
    assert public_field("train.lr") == "run.tags.lr"


def test_wrong_config_types_are_named():
    with pytest.raises(ConfigError, match="coding: must be a gcode.CodingConfig"):
        to_train_config({"scheme": "gc"}, gcode.ScalingConfig(), gcode.RunConfig())


def test_progress_bar_starts_at_a_resumed_runs_round(capsys):
    from gcode.api import _ProgressBar
    bar = _ProgressBar()
    for r in (10, 11):
        bar.update({"round": r, "rounds": 30, "decoded_jobs": r + 1, "jobs": 30,
                    "stragglers": [], "waits": 0, "loss": 0.5})
    assert (bar.bar.n, bar.bar.total) == (12, 30)
    bar.close()
    assert "training from round 10 of 30" in capsys.readouterr().err
