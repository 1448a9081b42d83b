"""The bad-input catalogue: every malformed input gets an error that names the problem, and the
command line never shows a traceback from deep inside a library.

Each case is (id, call, exception type, text the message must contain). The command-line cases
run ``gcode`` in this process (hostile_helpers.cli); tests/cli/test_hostile_cli.py runs one real
``gcode`` process per failure class.
"""

import json

import grpc
import numpy as np
import pytest
from hostile_helpers import cli

from gcode.codes import make_scheme
from gcode.codes.state import restore_scheme
from gcode.sim.online import OnlineConfig
from gcode.stragglers import load_trace, make_delay_model
from gcode.telemetry.runlog import read_run_log
from gcode.train import Dataset, load_dataset, make_model, make_optimizer


def _trace(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


SCHEME_CASES = [
    ("lam > n", lambda: make_scheme("msgc", n=4, B=1, W=2, lam=5), "lam must satisfy lam <= n"),
    ("B >= W", lambda: make_scheme("msgc", n=4, B=2, W=2, lam=1), "B must satisfy 1 <= B < W"),
    ("B = 0", lambda: make_scheme("srsgc", n=4, B=0, W=2, lam=1), "B must be >= 1"),
    ("s >= n", lambda: make_scheme("gc", n=4, s=4), "s must satisfy 0 <= s < n"),
    ("negative s", lambda: make_scheme("ignore", n=4, s=-1), "s must satisfy"),
    ("n < 1", lambda: make_scheme("uncoded", n=0), "n must be an integer >= 1"),
    ("float n", lambda: make_scheme("uncoded", n=2.5), "n must be an integer >= 1"),
    ("jobs = 0", lambda: make_scheme("gc", n=4, s=1, jobs=0), "jobs must be an integer >= 1"),
    ("missing lam", lambda: make_scheme("msgc", n=4, B=1, W=2), "needs parameter 'lam'"),
    ("unknown param", lambda: make_scheme("gc", n=4, s=1, W=3), "unknown parameter 'W'"),
    ("unknown scheme", lambda: make_scheme("rs", n=4), "unknown scheme 'rs'"),
    ("unknown code", lambda: make_scheme("gc", n=4, s=1, gc_code="mds"), "gc_code must be one of"),
    ("bool lam", lambda: make_scheme("msgc", n=4, B=1, W=2, lam=True), "lam must be an integer"),
    ("srsgc s >= n", lambda: make_scheme("srsgc", n=1, B=1, W=2, lam=1), "needs s="),
]


@pytest.mark.parametrize("label,call,message", SCHEME_CASES, ids=[c[0] for c in SCHEME_CASES])
def test_scheme_parameters(label, call, message):
    with pytest.raises(ValueError, match=message):
        call()


TRACE_CASES = [
    ("empty file", "", "empty"),
    ("not a number", "1.0,2.0\n1.0,abc\n", "line 2, column 2"),
    ("ragged row", "1.0,2.0\n1.0\n", "line 2 has 1 columns"),
    ("NaN", "1.0,nan\n", "line 1, column 2"),
    ("negative time", "1.0,-2.0\n", "line 1, column 2"),
    ("zero time", "0,1.0\n", "line 1, column 1"),
    ("header row", "w0,w1\n1.0,2.0\n", "header"),
    ("not UTF-8", b"1.0,\xff\xfe\n", "UTF-8"),
]


@pytest.mark.parametrize("label,text,message", TRACE_CASES, ids=[c[0] for c in TRACE_CASES])
def test_malformed_traces(tmp_path, label, text, message):
    with pytest.raises(ValueError, match=message):
        load_trace(_trace(tmp_path, text))


DATA_CASES = [
    ("length mismatch", lambda: Dataset.from_arrays(np.zeros((3, 2)), np.zeros(2, int)), "length"),
    ("non-finite x", lambda: Dataset.from_arrays(np.full((2, 2), np.nan), np.zeros(2, int)), "finite"),
    ("label out of range", lambda: Dataset.from_arrays(np.zeros((2, 2)), np.array([0, 5]),
            num_classes=2), "label"),
    ("unknown dataset", lambda: load_dataset("imagenet"), "imagenet"),
    ("unknown model", lambda: make_model("resnet9000", 4, 2, 0), "resnet9000"),
    ("unknown optimizer", lambda: make_optimizer("lion", make_model("mlp", 4, 2, 0).parameters()), "lion"),
    ("bad optimizer option", lambda: make_optimizer("sgd", make_model("mlp", 4, 2, 0).parameters(), lr=0.1,
            momentun=0.9), "momentun"),
    ("unknown delay model", lambda: make_delay_model("weibull"), "weibull"),
    ("bad delay parameter", lambda: make_delay_model("pareto", scale=1.0, alpha=2.0, shape=3), "shape"),
    ("bad online tuner window", lambda: OnlineConfig(window=1), "window must be >= 2"),
]


@pytest.mark.parametrize("label,call,message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_datasets_models_and_settings(label, call, message):
    with pytest.raises(ValueError, match=message):
        call()


STATE_CASES = [
    ("no format", {}, "unsupported or missing format"),
    ("spec not an object", {"format": 1, "spec": 3}, "'spec' must be an object"),
    ("bad mask", {"format": 1, "spec": {"name": "gc", "n": 4, "params": {"s": 1}},
                  "events": [["record", 0, "1x11"]]}, "0/1"),
    ("unknown event", {"format": 1, "spec": {"name": "gc", "n": 4, "params": {"s": 1}},
                       "events": [["teleport"]]}, "unknown event kind"),
    ("decode of an undecodable job", {"format": 1, "spec": {"name": "uncoded", "n": 2},
                                      "events": [["record", 0, "10"], ["decode", 0]]}, "not decodable"),
]


@pytest.mark.parametrize("label,state,message", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_scheme_checkpoints(label, state, message):
    with pytest.raises(Exception, match=message) as info:
        restore_scheme(json.loads(json.dumps(state)))
    assert isinstance(info.value, (ValueError, RuntimeError))


LOG_CASES = [
    ("garbage", b"not a run log at all", "not a gcode run log"),
    ("truncated", None, "truncated"),
]


@pytest.mark.parametrize("label,data,message", LOG_CASES, ids=[c[0] for c in LOG_CASES])
def test_run_logs(tmp_path, label, data, message):
    path = tmp_path / "run.pb"
    if data is None:
        from gcode.sim import PaperPolicy
        from gcode.telemetry.sim_logging import simulate_with_log
        trace = np.ones((4, 3)) + np.arange(12).reshape(4, 3) / 10
        simulate_with_log(make_scheme("uncoded", n=3, jobs=3), trace, PaperPolicy(1.0), 0.0, 1.0,
                          str(tmp_path / "run"))
        path.write_bytes(path.read_bytes()[:-7])
    else:
        path.write_bytes(data)
    with pytest.raises(ValueError, match=message):
        read_run_log(path)


def test_rpcs_with_bad_requests_and_tokens():
    from gcode.telemetry.monitor import MonitorClient, MonitorServer
    with MonitorServer("127.0.0.1:0", token="secret") as server:
        for token in (None, "wrong"):
            with pytest.raises(grpc.RpcError) as info:
                MonitorClient(server.target, token=token).status()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        client = MonitorClient(server.target, token="secret")
        with pytest.raises(grpc.RpcError) as info:
            next(iter(client.watch(from_round=-1)))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            client.request_stop("x" * 5000)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(ValueError, match="token"):
        MonitorServer("0.0.0.0:0")


CONFIG_CASES = [
    ("zero burst", {"scheme": {"name": "msgc", "B": 0}}, "scheme.B: must be >= 1"),
    ("unknown section", {"schem": {}}, "schem: unknown section"),
    ("unknown field", {"scheme": {"nme": "gc"}}, "scheme.nme: unknown field"),
    ("no workers", {"cluster": {"workers": 0}}, "cluster.workers: must be >= 1"),
    ("unknown policy", {"policy": {"name": "fast"}}, "policy.name: must be one of"),
    ("negative lr", {"train": {"lr": -1}}, "train.lr: must be a positive"),
    ("string batch", {"train": {"batch_size": "big"}}, "train.batch_size: must be an integer"),
    ("s >= workers", {"scheme": {"name": "gc", "s": 9}}, "scheme.s: must satisfy"),
    ("unknown delay model", {"inject": {"model": "weibull"}}, "inject.model: must be one of"),
    ("unknown fault", {"faults": [{"round": 1, "worker": 0, "kind": "explode"}]}, "faults[0].kind"),
    ("too few models", {"train": {"models": 1}, "scheme": {"name": "msgc", "B": 1, "W": 2, "lam": 1}},
     "train.models: must be >= T+1"),
]


@pytest.mark.parametrize("label,data,message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_train_configs(label, data, message):
    from gcode.config import from_dict, validate
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("+", r"\+")):
        validate(from_dict(data))


@pytest.mark.parametrize("suffix,text,message", [
    (".toml", "[scheme\nname = 1", "invalid TOML"),
    (".yaml", "scheme: [unclosed", "invalid YAML"),
    (".ini", "x=1", "unknown extension"),
    (".toml", "scheme = 3", "scheme: must be a table"),
])
def test_config_files(tmp_path, suffix, text, message):
    from gcode.config import load_config
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path)


CLI_CASES = [
    (["simulate", "--scheme", "gc", "--s", "999"], "s must satisfy"),
    (["simulate", "--trace", "/nonexistent.csv"], "no such file"),
    (["simulate", "--mu", "-1"], "argument --mu: must be a positive finite number"),
    (["simulate", "--policy", "gap", "--gap", "0"], "argument --gap: must be a positive finite number"),
    (["train", "--policy", "gap", "--gap", "-0.1"], "policy.gap"),
    (["bench", "versus", "--log-dir", "/proc/version/logs"], "--log-dir: /proc/version/logs"),
    (["bench", "versus", "--out", "/proc/version/out"], "--out: /proc/version/out"),
    (["simulate", "--jobs", "0"], "argument --jobs: must be >= 1"),
    (["tune", "--jobs", "100"], "exceeds the trace"),
    (["verify", "--scheme", "gc", "--n", "0", "--s", "1"], "argument --n: must be >= 1"),
    (["replay", "/nonexistent.pb"], "nonexistent"),
    (["bench", "trace", "--traces", "/nonexistent"], "no such directory"),
    (["train", "--workers", "0"], "cluster.workers"),
    (["train", "--scheme", "srsgc", "--dispatch", "arrival"], "train.dispatch: 'arrival' needs"),
    (["train", "--scheme", "gc", "--dispatch", "arrival", "--no-pipeline"],
     "train.dispatch: 'arrival' starts"),
    (["train", "--config", "/nonexistent.toml"], "no such file"),
]


@pytest.mark.parametrize("args,message", CLI_CASES,
                         ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(CLI_CASES)])
def test_cli_reports_one_line_without_traceback(args, message):
    code, _, _, stderr, _ = cli(*args)
    assert code == 2, stderr
    assert message in stderr and "Traceback" not in stderr


# ---- run checkpoints (gcode train --checkpoint-dir / --resume) -------------------------------
def _run_checkpoint(tmp_path, **extra):
    from gcode.config import TrainConfig
    from gcode.runtime.checkpoint import write_checkpoint
    tree = {"format": "gcode-checkpoint", "version": 1, "round": 4,
            "config": TrainConfig().to_dict(), "w": np.ones(3, dtype=np.float32), **extra}
    write_checkpoint(tmp_path / "ck", 2, {**tree, "round": 2})
    return write_checkpoint(tmp_path / "ck", 4, tree)


def _rehash(path):
    """Recompute the manifest after an edit, so only the content check can catch it."""
    import hashlib

    from gcode.runtime import checkpoint as ck
    m = json.loads((path / ck.MANIFEST_FILE).read_text())
    m.pop("manifest_sha256")
    for name in (ck.STATE_FILE, ck.ARRAYS_FILE):
        m["files"][name] = {"bytes": (path / name).stat().st_size, "sha256": ck.sha256_file(path / name)}
    m["manifest_sha256"] = hashlib.sha256(ck.canonical_json(m)).hexdigest()
    (path / ck.MANIFEST_FILE).write_text(json.dumps(m))


def _flip_byte(path):
    data = bytearray((path / "arrays.npz").read_bytes())
    data[len(data) // 2] ^= 1
    (path / "arrays.npz").write_bytes(bytes(data))


def _truncate_state(path):
    (path / "state.json").write_bytes((path / "state.json").read_bytes()[:-10])


def _manifest_garbage(path):
    (path / "manifest.json").write_text("{not json")


def _future_version(path):
    import hashlib

    from gcode.runtime import checkpoint as ck
    m = json.loads((path / "manifest.json").read_text())
    m.pop("manifest_sha256")
    m["version"] = 99
    m["manifest_sha256"] = hashlib.sha256(ck.canonical_json(m)).hexdigest()
    (path / "manifest.json").write_text(json.dumps(m))


def _pickled_array(path):
    import zipfile
    with zipfile.ZipFile(path / "arrays.npz", "a") as zf, zf.open("evil.npy", "w") as f:
        np.lib.format.write_array(f, np.array([print], dtype=object), allow_pickle=True)
    _rehash(path)


def _dangling_array(path):
    text = (path / "state.json").read_text()
    (path / "state.json").write_text(text.replace('{"$array":"/w"}', '{"$array":"/gone"}'))
    _rehash(path)


RUN_CHECKPOINT_CASES = [
    ("flipped byte", _flip_byte, "arrays.npz does not match its SHA-256"),
    ("torn state", _truncate_state, "torn write or modified"),
    ("manifest not JSON", _manifest_garbage, "not a valid manifest"),
    ("no manifest", lambda p: (p / "manifest.json").unlink(), "no manifest.json"),
    ("future version", _future_version, "format version 99 is not supported"),
    ("pickled array", _pickled_array, "allow_pickle"),
    ("dangling array", _dangling_array, "refers to array '/gone', missing in arrays.npz"),
]


@pytest.mark.parametrize("label,damage,message", RUN_CHECKPOINT_CASES,
                         ids=[c[0] for c in RUN_CHECKPOINT_CASES])
def test_run_checkpoints(tmp_path, label, damage, message):
    from gcode.runtime.checkpoint import CheckpointError, read_checkpoint
    damage(_run_checkpoint(tmp_path))
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(")) as info:
        read_checkpoint(tmp_path / "ck")
    assert "round-00000004" in str(info.value)


def test_run_checkpoint_settings_and_resume_configs(tmp_path):
    from gcode.config import ConfigError, TrainConfig, from_dict
    from gcode.runtime.checkpoint import CheckpointError, check_resume_config, read_checkpoint
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    for data, message in [({"checkpoint": {"every": 0}}, "checkpoint.every: must be >= 1"),
                          ({"checkpoint": {"keep": -1}}, "checkpoint.keep: must be >= 1"),
                          ({"checkpoint": {"dir": str(tmp_path / "file")}}, "is not a directory"),
                          ({"checkpoint": {"resume": str(tmp_path / "nope")}},
                           "checkpoint.resume: no such checkpoint directory")]:
        with pytest.raises(ConfigError, match=message):
            from_dict(data)
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        read_checkpoint(tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"^train.lr: differs from the checkpoint's config "
                                          r"\(checkpoint: 0.01, this run: 0.02\)"):
        check_resume_config(TrainConfig().to_dict(), TrainConfig().replace(**{"train.lr": 0.02}))
    with pytest.raises(ConfigError, match=r"^scheme.jobs: is 39, fewer than the checkpointed "
                                          r"run's 40: a run can be extended with more jobs, not "
                                          r"shortened"):
        check_resume_config(TrainConfig().to_dict(), TrainConfig().replace(**{"scheme.jobs": 39}))


@pytest.mark.parametrize("args,message", [
    (["train", "--resume", "/nonexistent/ck"], "checkpoint.resume: no such checkpoint directory"),
    (["train", "--checkpoint-every", "0"], "checkpoint.every: must be >= 1"),
    (["train", "--resume", "DAMAGED"], "is damaged or incomplete"),
], ids=["resume missing", "every 0", "resume damaged"])
def test_cli_checkpoint_errors_are_one_line(tmp_path, args, message):
    path = _run_checkpoint(tmp_path)
    _flip_byte(path)
    args = [str(path) if a == "DAMAGED" else a for a in args]
    code, _, _, stderr, _ = cli(*args)
    assert code == 2, stderr
    assert message in stderr and "Traceback" not in stderr
