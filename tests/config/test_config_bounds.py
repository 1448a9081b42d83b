"""Issue 29's numbers and files: every number is bounded by what the machine can do, and a YAML
config means what the same file in TOML means. Each case ends in one line naming the field or
file, before Ray starts. No Ray."""

import pytest
from hostile_helpers import assert_one_line, cli, write

import gcode
from gcode.config import ConfigError, from_dict, load_config, to_train_config


@pytest.mark.parametrize("data, message", [
    ({"train": {"lr": 3e38}}, ("train.lr: must be <= 1e+06 (a larger step overflows float32 "
                              "arithmetic), got 3e+38")),
    ({"cluster": {"round_timeout_s": 1e7}}, ("cluster.round_timeout_s: must be <= 1000000 (about "
                                            "11.6 days; longer waits overflow the system's timers)")),
    ({"cluster": {"startup_timeout_s": float("inf")}}, ("cluster.startup_timeout_s: must be a "
                                                       "positive finite number, got inf")),
    ({"policy": {"name": "deadline", "deadline": 1e9}}, "policy.deadline: must be <= 1000000"),
    ({"inject": {"model": "bursty", "time_scale": 1e308}}, "inject.time_scale: must be <= 1e+06"),
    ({"train": {"seed": 2**64}}, "train.seed: must be <= 9223372036854775807"),
    ({"scheme": {"jobs": 2}, "train": {"models": 100000}},
     "train.models: must be <= max(scheme.jobs, T+2) = 3: job t trains model t mod M"),
])
def test_numbers_beyond_the_machine_are_refused_naming_the_field(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert str(info.value).startswith(message)


def test_the_api_names_its_own_fields_for_the_same_bounds():
    with pytest.raises(ConfigError, match=r"^run.tags.lr: must be <= 1e\+06"):
        to_train_config(gcode.CodingConfig(), gcode.ScalingConfig(), gcode.RunConfig(tags={"lr": 3e38}))
    with pytest.raises(ConfigError, match=r"^scaling.round_timeout_s: must be <= 1000000"):
        to_train_config(gcode.CodingConfig(), gcode.ScalingConfig(round_timeout_s=1e7), gcode.RunConfig())
    with pytest.raises(ConfigError, match=r"^run.models: must be <= max\(run.jobs, T\+2\)"):
        to_train_config(gcode.CodingConfig(), gcode.ScalingConfig(), gcode.RunConfig(jobs=2, models=10**5))


def test_useful_model_counts_pass():
    assert from_dict({"scheme": {"jobs": 2}, "train": {"models": 3}}).train.models == 3  # T+2
    assert from_dict({"scheme": {"jobs": 40}, "train": {"models": 40}}).train.models == 40


def test_flags_beyond_the_machine_are_one_line():
    code, _, last, full, _ = cli("train", "--lr", "3e38")
    assert_one_line(code, last, full, "train.lr: must be <= 1e+06")
    code, _, last, full, _ = cli("train", "--round-timeout-s", "1e7")
    assert_one_line(code, last, full, "cluster.round_timeout_s: must be <= 1000000")


def test_injected_delays_longer_than_a_round_may_last_are_refused_before_ray():
    """Every worker of round 0 sleeps at least 1000 s against a 120 s round timeout: the run
    could only time out, so it never starts."""
    code, _, last, full, seconds = cli("train", "--inject-model", "shifted_exp", "--inject-param",
                                       "shift=1000", "--inject-param", "rate=1", "--jobs", "2")
    assert_one_line(code, last, full, "inject.time_scale: in round 0 every worker sleeps at least",
                    "longer than cluster.round_timeout_s = 120")
    assert seconds < 60


def test_a_model_too_large_for_memory_is_refused_before_ray():
    """hidden = 10^9 asks for hundreds of GiB: refused from the model's size on the meta device,
    before any worker allocates it."""
    code, _, last, full, seconds = cli("train", "--model-param", "hidden=1000000000", "--jobs", "2")
    assert_one_line(code, last, full, "train.model_params: the model holds", "GiB available")
    assert "raylet" not in full and seconds < 60


# ---- YAML means what TOML means ---------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("scheme:\n  jobs: 1:30\n", "line 2: scheme.jobs: 1:30 is a base-60 number"),
    ("train:\n  seed: 010\n", "line 2: train.seed: 010 is a number with a leading zero"),
    ("scheme:\n  jobs: 4\n  jobs: 8\n", "line 3: scheme.jobs is given twice"),
    ("scheme: {name: gc, s: 1}\nscheme: {name: msgc}\n", "line 2: scheme is given twice"),
    ("faults:\n  - [1, 0:30]\n", "line 2: faults[0][1]: 0:30 is a base-60 number"),
])
def test_ambiguous_yaml_is_refused_naming_file_line_and_key(tmp_path, text, message):
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"config: {path}: {message}")


def test_yaml_reads_numbers_and_words_as_toml_does(tmp_path):
    cfg = load_config(write(tmp_path / "c.yaml", "train:\n  seed: 0x1F\n  lr: 1e-3\n"
                                                 "cluster:\n  prefetch: on\n  workers: 1_0\n"))
    assert cfg.train.seed == 31 and cfg.train.lr == 0.001  # as TOML reads 0x1F and 1e-3
    assert cfg.cluster.prefetch == "on" and cfg.cluster.workers == 10  # YAML 1.1 read on as true
    toml = load_config(write(tmp_path / "c.toml", "[train]\nseed = 0x1F\nlr = 1e-3\n"
                                                  "[cluster]\nprefetch = \"on\"\nworkers = 1_0\n"))
    assert toml == cfg
    with pytest.raises(ConfigError, match=r"^train.check_decode: must be true or false, got 'yes'"):
        load_config(write(tmp_path / "d.yaml", "train:\n  check_decode: yes\n"))
