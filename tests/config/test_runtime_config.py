"""TrainConfig: defaults, TOML/YAML loading, field-named errors, flag overrides. No Ray."""

import argparse

import pytest

from gcode.cli.train import add_train_arguments, config_from_args, parse_value
from gcode.config import (
    ConfigError,
    Fault,
    TrainConfig,
    from_dict,
    load_config,
    parse_faults,
    validate,
    with_overrides,
)


def parse(argv):
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    return config_from_args(p.parse_args(argv))


def test_defaults_are_valid_one_model_auto_digits_4_workers():
    from gcode.config.tables import scheme_delay
    cfg = TrainConfig()
    validate(cfg)
    assert cfg.scheme.name == "auto" and cfg.cluster.workers == 4 and cfg.train.dataset == "digits"
    assert cfg.scheme_params() == {} and cfg.policy_name == "partial"  # the tuner picks
    assert cfg.train.models is None and scheme_delay(cfg.scheme, 4, cfg.train) == 0  # T = 0 only


def test_auto_admits_delayed_schemes_only_when_asked():
    from gcode.config.tables import scheme_delay
    cfg = TrainConfig()
    assert scheme_delay(cfg.scheme, 4, cfg.replace(**{"train.models": 1}).train) == 0
    assert scheme_delay(cfg.scheme, 4, cfg.replace(**{"train.models": 3}).train) == 1
    assert scheme_delay(cfg.scheme, 4, cfg.replace(**{"train.mode": "delayed"}).train) == 1
    assert parse(["--scheme", "gc"]).policy_name == "paper"  # a fixed scheme's default
    assert parse(["--scheme", "auto", "--policy", "paper"]).policy_name == "paper"


def test_toml_and_yaml_give_the_same_config(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text("""
[scheme]
name = "srsgc"
B = 1
W = 3
lam = 2
jobs = 10
[cluster]
workers = 6
[train]
model = "logistic"
lr = 0.2
optimizer_params = { momentum = 0.9 }
[inject]
model = "shifted_exp"
params = { shift = 0.01, rate = 50.0 }
[[faults]]
round = 3
worker = 1
kind = "nan"
""")
    yaml = tmp_path / "run.yaml"
    yaml.write_text("""
scheme: {name: srsgc, B: 1, W: 3, lam: 2, jobs: 10}
cluster: {workers: 6}
train: {model: logistic, lr: 0.2, optimizer_params: {momentum: 0.9}}
inject: {model: shifted_exp, params: {shift: 0.01, rate: 50.0}}
faults: {3: [1, nan]}
""")
    a, b = load_config(toml), load_config(yaml)
    assert a == b
    assert a.faults == (Fault(3, 1, "nan"),)
    assert a.train.optimizer_params == {"momentum": 0.9}


@pytest.mark.parametrize("data, field", [
    ({"scheme": {"B": 0}}, "scheme.B"),
    ({"scheme": {"name": "msgc", "W": 1}}, "scheme.W"),
    ({"scheme": {"name": "msgc", "lam": 9}}, "scheme.lam"),
    ({"scheme": {"name": "gc", "s": 4}}, "scheme.s"),
    ({"scheme": {"name": "gc", "B": 2}}, "scheme.B"),          # not a gc parameter
    ({"scheme": {"jobs": 0}}, "scheme.jobs"),
    ({"scheme": {"nmae": "gc"}}, "scheme.nmae"),               # typo
    ({"cluster": {"workers": "four"}}, "cluster.workers"),
    ({"cluster": {"placement": "random"}}, "cluster.placement"),
    ({"cluster": {"transport": "tcp"}}, "cluster.transport"),
    ({"cluster": {"prefetch": "yes"}}, "cluster.prefetch"),
    ({"train": {"dispatch": "early"}}, "train.dispatch"),
    ({"scheme": {"name": "srsgc"}, "train": {"dispatch": "arrival"}}, "train.dispatch"),
    ({"scheme": {"name": "msgc"}, "train": {"dispatch": "arrival", "pipeline": False}},
     "train.dispatch"),
    ({"scheme": {"name": "msgc"}, "policy": {"name": "deadline"}}, "policy.deadline"),
    ({"policy": {"name": "deadline"}}, "policy.name"),             # auto picks its own policy
    ({"policy": {"mu": -1}}, "policy.mu"),
    ({"scheme": {"name": "msgc"}, "train": {"models": 1}}, "train.models"),  # T=1 needs M >= 2
    ({"train": {"mode": "delayed", "models": 2}}, "train.models"),
    ({"train": {"optimizer": "rmsprop"}}, "train.optimizer"),
    ({"train": {"lr": 0}}, "train.lr"),
    ({"inject": {"model": "nope"}}, "inject.model"),
    ({"inject": {"model": "pareto", "params": {"alpha": -1}}}, "inject.params"),
    ({"inject": {"params": {"base": 1}}}, "inject.params"),
    ({"inject": {"trace": "/no/such/file.csv"}}, "inject.trace"),
    ({"faults": [{"round": 1, "worker": 9, "kind": "raise"}]}, "faults[0].worker"),
    ({"faults": [{"round": 1, "worker": 0, "kind": "explode"}]}, "faults[0].kind"),
    ({"bogus": {}}, "bogus"),
])
def test_errors_name_the_field(data, field):
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_overrides_and_replace():
    cfg = with_overrides(TrainConfig(), {"cluster.workers": 8, "scheme.name": "msgc",
                                         "scheme.lam": 3})
    assert cfg.cluster.workers == 8 and cfg.scheme_params()["lam"] == 3
    assert cfg.replace(**{"train.seed": 5}).train.seed == 5
    with pytest.raises(ConfigError, match="train.sed"):
        with_overrides(cfg, {"train.sed": 1})


def test_fault_forms():
    assert parse_faults({"2": (1, "raise")}) == (Fault(2, 1, "raise"),)
    assert parse_faults({2: [(1, "raise"), (0, "nan")]}) == (Fault(2, 0, "nan"), Fault(2, 1, "raise"))
    assert parse_faults([{"round": 4, "worker": 2, "kind": "exit"}]) == (Fault(4, 2, "exit"),)


def test_flags_override_file_and_scheme_switch_drops_foreign_params(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[scheme]\nname = "msgc"\nB = 2\nW = 3\nlam = 2\n[train]\nlr = 0.3\n')
    cfg = parse(["--config", str(f), "--lr", "0.1", "--workers", "6"])
    assert cfg.train.lr == 0.1 and cfg.cluster.workers == 6 and cfg.scheme.B == 2
    cfg = parse(["--config", str(f), "--scheme", "gc", "--s", "2"])
    assert cfg.scheme.name == "gc" and cfg.scheme.B is None and cfg.scheme_params()["s"] == 2


def test_flags_cover_the_issue():
    cfg = parse(["--scheme", "msgc", "--B", "1", "--W", "3", "--lam", "2", "--gc-code", "fr",
                 "--jobs", "7", "--mu", "0.5", "--policy", "deadline", "--deadline", "0.2",
                 "--workers", "5", "--models", "3", "--mode", "concurrent", "--seed", "4",
                 "--model", "logistic", "--dataset", "synthetic", "--optimizer", "sgd",
                 "--lr", "0.1", "--batch-size", "100", "--inject", "bursty",
                 "--inject-param", "B=1", "--inject-param", "W=3", "--inject-param", "lam=2",
                 "--inject-param", "base=0.01", "--time-scale", "2", "--log-jsonl", "x.jsonl",
                 "--address", "127.0.0.1:6379", "--check-decode"])
    assert cfg.scheme_params() == {"B": 1, "W": 3, "lam": 2, "gc_code": "fr"}
    assert (cfg.policy.name, cfg.policy.deadline, cfg.policy.mu) == ("deadline", 0.2, 0.5)
    assert cfg.inject.params == {"B": 1, "W": 3, "lam": 2, "base": 0.01}
    assert cfg.inject.time_scale == 2.0 and cfg.log.jsonl == "x.jsonl"
    assert cfg.cluster.address == "127.0.0.1:6379" and cfg.train.check_decode
    assert (cfg.train.models, cfg.train.seed, cfg.train.batch_size) == (3, 4, 100)


def test_bad_flag_value_is_a_field_error():
    with pytest.raises(ConfigError, match=r"^scheme\.W"):
        parse(["--scheme", "msgc", "--B", "2", "--W", "2"])
    with pytest.raises(ConfigError, match=r"^scheme\.B: is not a parameter of scheme 'auto'"):
        parse(["--B", "2"])
    with pytest.raises(SystemExit):
        parse(["--inject-param", "novalue"])


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("1e-3") == 0.001 and parse_value("true") is True
    assert parse_value("a/b.csv") == "a/b.csv"


def test_auto_scheme_and_partial_policy_flags():
    cfg = parse(["--scheme", "auto", "--policy", "partial", "--load-slope", "0.3"])
    assert cfg.scheme.name == "auto" and cfg.scheme_params() == {}
    assert cfg.policy.name == "partial" and cfg.scheme.load_slope == 0.3
    with pytest.raises(ConfigError, match=r"^policy\.name"):
        parse(["--scheme", "auto", "--policy", "all"])
    with pytest.raises(ConfigError, match=r"^scheme\.lam"):
        parse(["--scheme", "auto", "--lam", "2"])
    with pytest.raises(ConfigError, match=r"^scheme\.load_slope"):
        parse(["--scheme", "gc", "--load-slope", "0.3"])
