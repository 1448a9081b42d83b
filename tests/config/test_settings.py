"""Every setting is declared once (gcode/config/settings.py), and the flags, the file sections,
the public configs and the derived tables follow from the declarations. No Ray."""

import dataclasses
import typing

import pytest

import gcode
from gcode.cli import build_parser
from gcode.cli.flags import given
from gcode.config import (
    BY_API,
    BY_FILE,
    SECTIONS,
    SETTINGS,
    ConfigError,
    TrainConfig,
    arrival_schemes,
    canonical,
    from_dict,
    how_to_set,
    speaking,
    to_train_config,
)
from gcode.config import settings as S
from gcode.config.tables import scheme_parameters


def test_each_setting_has_one_declaration_one_flag_and_one_file_key():
    assert len(BY_API) == len(SETTINGS)
    flags = [f for s in SETTINGS for f in (s.flag, *s.spec.flags)]
    assert len(flags) == len(set(flags))
    files = [s.file for s in SETTINGS if s.file]
    assert len(files) == len(set(files)) == len(BY_FILE)
    for cls in (S.CodingConfig, S.ScalingConfig, S.RunConfig, S.InjectConfig, S.CheckpointConfig,
                S.LogConfig, S.PresetConfig):
        undeclared = {f.name for f in dataclasses.fields(cls)} - {s.name for s in SETTINGS if s.owner is cls}
        assert undeclared <= {"inject", "checkpoint", "logs", "faults", "tags"}, (cls, undeclared)


def test_file_sections_hold_exactly_their_settings_with_the_same_types():
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        keys = [f.name for f in dataclasses.fields(cls)]
        assert keys == [s.key for s in SETTINGS if s.section == section], section
        for s in SETTINGS:
            if s.section == section:
                assert hints[s.key] == s.hint and getattr(cls(), s.key) == s.default(), s.api


def test_every_train_flag_comes_from_a_declaration():
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.values()
                 if a.prog.endswith("train"))
    options = {o for action in train._actions for o in action.option_strings}
    declared = {f for s in SETTINGS for f in (s.flag, *s.spec.flags)}
    assert options - declared == {"-h", "--help", "--config", "--json", "--quiet"}
    assert declared <= options


def test_derived_tables():
    from gcode.codes import SCHEMES
    assert arrival_schemes() == ("uncoded", "ignore", "gc", "msgc")
    assert all(scheme_parameters(name) == SCHEMES[name][1] for name in SCHEMES)
    assert scheme_parameters("auto") == ("gc_code",)
    from gcode.config.spec import choices_of
    assert choices_of(BY_API["coding.scheme"].spec) == (*SCHEMES, "auto")


@pytest.mark.parametrize("old, new, value", [
    ("cluster.worker_cpus", "cpus_per_worker", 0.5),
    ("policy.deadline_s", "deadline", 0.2),
    ("scheme.auto_load_slope", "load_slope", 0.1),
])
def test_older_keys_still_read_and_errors_name_them_as_written(old, new, value):
    section, key = old.split(".")
    extra = {"scheme": {"name": "auto"}} if new == "load_slope" else {}
    cfg = from_dict({**extra, section: {**extra.get(section, {}), key: value}})
    assert getattr(getattr(cfg, section), new) == value
    with pytest.raises(ConfigError, match=rf"^{old}: must be"):
        from_dict({**extra, section: {**extra.get(section, {}), key: -1}})
    with pytest.raises(ConfigError, match=rf"^{old}: is {section}.{new} under an older name"):
        from_dict({section: {key: value, new: value}})


def test_an_old_checkpoint_config_reads_as_the_current_one():
    old = TrainConfig().to_dict()
    old["cluster"]["worker_cpus"] = old["cluster"].pop("cpus_per_worker")
    old["policy"]["deadline_s"] = old["policy"].pop("deadline")
    assert canonical(old)[0] == TrainConfig().to_dict()


def test_older_flags_still_work():
    args = build_parser().parse_args(["train", "--worker-cpus", "0.5", "--resume", "ck",
                                      "--inject", "bursty", "--time-scale", "2", "--run-log", "r"])
    assert given(args) == {"scaling.cpus_per_worker": 0.5, "run.checkpoint.resume": "ck",
                           "run.inject.model": "bursty", "run.inject.time_scale": 2.0,
                           "run.logs.run_log": "r"}


def test_choices_read_from_gcode_train_are_checked_by_validation():
    """--dataset and --optimizer take their names from gcode.train (which imports torch), so the
    parser lists them only in --help; a wrong one is one line naming the field."""
    from hostile_helpers import assert_one_line, cli
    for argv, message in ((["--dataset", "bogus"], "train.dataset: must be one of digits"),
                          (["--optimizer", "lion"], "train.optimizer: must be one of sgd, adam")):
        code, _, last, full, _ = cli("train", *argv)
        assert_one_line(code, last, full, message)


def test_a_flag_error_names_the_flag_as_typed(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--time-scale", "nan"])
    assert "argument --time-scale: must be a finite number, got 'nan'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--gap", "2e6"])
    assert "argument --gap: must be <= 1e+06, got 2e+06" in capsys.readouterr().err


def test_none_means_the_default_for_nested_run_configs():
    cfg = to_train_config(gcode.CodingConfig(), gcode.ScalingConfig(),
                          gcode.RunConfig(inject=None, checkpoint=None, logs=None))
    assert cfg.inject == gcode.InjectConfig() and cfg.log == gcode.LogConfig()
    with pytest.raises(ConfigError, match=r"^run.inject: must be a gcode.InjectConfig or None"):
        to_train_config(gcode.CodingConfig(), gcode.ScalingConfig(), gcode.RunConfig(inject={}))


def test_two_logs_on_one_file_are_refused_before_anything_starts(tmp_path):
    logs = gcode.LogConfig(jsonl=str(tmp_path / "x.jsonl"), run_log=str(tmp_path / "x.jsonl"))
    with pytest.raises(ConfigError, match=r"^run.logs.run_log: writes .*x\.jsonl, the file "
                                          r"run\.logs\.jsonl names"):
        to_train_config(gcode.CodingConfig(), gcode.ScalingConfig(), gcode.RunConfig(logs=logs))
    logs = gcode.LogConfig(jsonl=str(tmp_path / "x.jsonl"), run_log=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match=r"^run.logs.run_log"):
        to_train_config(gcode.CodingConfig(), gcode.ScalingConfig(), gcode.RunConfig(logs=logs))


def test_advice_speaks_the_front_end_in_use():
    assert how_to_set("checkpoint.resume", "runs/ck") == "checkpoint.resume = 'runs/ck'"
    with speaking("python"):
        assert how_to_set("checkpoint.resume", "runs/ck") == "CheckpointConfig(resume='runs/ck')"
        assert how_to_set("scheme.gc_code", "fr") == "CodingConfig(gc_code='fr')"
        with speaking("cli"):  # an outer front end keeps its words
            assert how_to_set("train.lr", 0.1) == "RunConfig(tags={'lr': 0.1})"
    with speaking("cli"):
        assert how_to_set("checkpoint.resume", "runs/ck") == "--checkpoint-resume runs/ck"
        assert how_to_set("policy.deadline", placeholder="SECONDS") == "--deadline SECONDS"


def test_rerunning_a_script_names_the_python_argument(tmp_path):
    """A checkpoint.dir that holds another run's checkpoints is refused before Ray starts, and
    gcode.fit says how to continue that run in Python, not with a flag."""
    import shutil
    from pathlib import Path

    import torch
    fixture = Path(__file__).resolve().parents[1] / "data" / "checkpoint-v1" / "round-00000003"
    shutil.copytree(fixture, tmp_path / "ck" / fixture.name)
    run = gcode.RunConfig(jobs=2, checkpoint=gcode.CheckpointConfig(dir=str(tmp_path / "ck")))
    with pytest.raises(ConfigError) as info:
        gcode.fit(lambda: torch.nn.Linear(2, 1), lambda m, b: m(b).sum(1), lambda: torch.zeros(8, 2),
                  lambda p: torch.optim.SGD(p, lr=0.1), coding=gcode.CodingConfig(scheme="uncoded"),
                  run=run, progress=False)
    assert str(info.value).startswith("run.checkpoint.dir: ")
    assert f"CheckpointConfig(resume='{tmp_path / 'ck'}')" in str(info.value)
    assert "--resume" not in str(info.value)


def test_python_errors_name_python_settings_in_their_advice_too():
    def refused(**run):
        with pytest.raises(ConfigError) as info:
            to_train_config(gcode.CodingConfig(scheme="msgc"), gcode.ScalingConfig(),
                            gcode.RunConfig(**run))
        return str(info.value)
    assert refused(dispatch="arrival", pipeline=False) == \
        "run.dispatch: 'arrival' starts round r+1 early, which needs run.pipeline and mode 'concurrent'"
    assert refused(inject=gcode.InjectConfig(params={"base": 1})) == \
        "run.inject.params: needs run.inject.model (InjectConfig(model=MODEL))"
    assert refused(jobs=2, models=99).startswith("run.models: must be <= max(run.jobs, T+2) = 3")
