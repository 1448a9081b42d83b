"""The hostile-input catalogue (issue 13): small files that would cause huge work, shared or
tampered checkpoint directories, monitor port squatters and lockouts, numbers that commands
accepted inconsistently, and errors that did not name their file or field.

Every case ends in one line that names the file or field (a ValueError message, or a CLI's last
stderr line), with no traceback, within a stated time bound, and with nothing lost: files
that were there before are still there and still verify. None of these cases starts Ray; the
live ones (two runs on one checkpoint directory, a diverged model, a killed raylet) are in
tests/runtime/test_hostile_runs.py.
"""

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from gcode.cli import main as gcode_main
from gcode.config import ConfigError, TrainConfig, from_dict, load_config
from gcode.runtime import checkpoint as ckpt
from gcode.runtime.checkpoint import CheckpointError, read_checkpoint, write_checkpoint

REPO = Path(__file__).resolve().parents[1]


# ---- helpers ----------------------------------------------------------------------------------
def cli(*argv, timeout_s=60):
    """Run ``gcode ARGV`` in this process: (exit code, stdout, last stderr line, all stderr,
    seconds). argparse errors exit through SystemExit, which counts as the exit code."""
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = gcode_main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    seconds = time.monotonic() - start
    assert seconds < timeout_s, f"{argv} took {seconds:.1f} s"
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    return code, out.getvalue(), (lines[-1] if lines else ""), err.getvalue(), seconds


def assert_one_line(code, last, full, *needles, status=2):
    assert code == status, full
    assert "Traceback" not in full, full
    assert last.startswith("gcode"), full
    for needle in needles:
        assert needle in last, (needle, full)


def _write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _rehash(folder):
    """Recompute the manifest after an edit, as an attacker would: only content checks remain."""
    m = json.loads((folder / ckpt.MANIFEST_FILE).read_text())
    m.pop("manifest_sha256")
    for name in (ckpt.STATE_FILE, ckpt.ARRAYS_FILE):
        m["files"][name] = {"bytes": (folder / name).stat().st_size,
                            "sha256": ckpt._sha256(folder / name)}
    m["manifest_sha256"] = hashlib.sha256(ckpt._canonical(m)).hexdigest()
    (folder / ckpt.MANIFEST_FILE).write_text(json.dumps(m))


def _full_tree(rounds=4, run_id="a" * 32):
    """A run checkpoint with every section a live run writes that check_tree reads: a real
    scheme driven through ``rounds`` rounds, a real torch model and Adam state."""
    import torch

    from gcode.codes import make_scheme
    from gcode.codes.state import scheme_state
    scheme = make_scheme("gc", n=2, s=1, jobs=rounds, gc_code="fr")
    for r in range(rounds):
        scheme.plan(r)
        scheme.record(r, np.ones(2, dtype=bool))
        if scheme.decodable(r):
            scheme.decode(r)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    return {"format": ckpt.FORMAT, "version": ckpt.VERSION, "round": rounds,
            "config": TrainConfig().to_dict(),
            "run": {"run_id": run_id, "runtime_s": 1.5, "sessions": 1, "n": 2, "models": 1,
                    "num_params": 8, "scheme": "gc"},
            "scheme": scheme_state(scheme),
            "coordinator": {"waits": 0, "decoded": rounds, "late_used": 0, "late_dropped": 0,
                            "retries": 0, "stragglers_total": 0, "updates": [rounds]},
            "models": [{"params": {k: v.clone() for k, v in model.state_dict().items()},
                        "optimizer": {"state": dict(sd["state"]),
                                      "param_groups": sd["param_groups"]}}]}


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- A. small files that would cause huge work --------------------------------------------------
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh")) + \
    "scheme:\n  name: gc\n  extra: *h\n"

BOUNDED_FILE_CASES = [
    ("yaml anchor bomb", "c.yaml", BOMB, "expands to more than 100000 values"),
    ("recursive yaml alias", "c.yaml", "a: &a [1, *a]\n", "refers to a value that contains it"),
    ("deep yaml", "c.yaml", "a: " + "[" * 3000 + "]" * 3000 + "\n", "nested more than 64 levels"),
    ("deep toml", "c.toml", "a = " + "[" * 3000 + "]" * 3000 + "\n", "nested more than 64 levels"),
    ("deep toml tables", "c.toml", "a = " + "{b = " * 200 + "1" + "}" * 200 + "\n",
     "nested more than 64 levels"),
    ("config over 1 MiB", "c.toml", "# " + "x" * (1 << 20) + "\n", "more than the 1 MiB"),
    ("utf-16 toml", "c.toml", "[train]\nlr = 0.1\n".encode("utf-16"), "looks like UTF-16"),
]


@pytest.mark.parametrize("label,name,text,message", BOUNDED_FILE_CASES,
                         ids=[c[0] for c in BOUNDED_FILE_CASES])
def test_config_files_are_read_within_bounds(tmp_path, label, name, text, message):
    path = _write(tmp_path / name, text)
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.monotonic() - start < 5
    assert str(info.value).startswith(f"config: {path}: ") and message in str(info.value)


def test_yaml_reads_scientific_notation_as_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-3 as a string; a config must not reject `lr: 1e-3`."""
    assert load_config(_write(tmp_path / "c.yaml", "train:\n  lr: 1e-3\n")).train.lr == 0.001


def test_anchor_bomb_with_resume_is_refused_before_the_checkpoint_is_read(tmp_path):
    path = _write(tmp_path / "bomb.yaml", BOMB)
    code, _, last, full, seconds = cli("train", "--config", path, "--resume", tmp_path / "nope")
    assert_one_line(code, last, full, "config:", str(path), "YAML bomb")
    assert seconds < 10


def test_trace_over_the_size_limit_is_refused_before_reading(tmp_path):
    from gcode.limits import MAX_TRACE_BYTES
    path = tmp_path / "huge.csv"
    with open(path, "wb") as f:  # sparse: no real disk use
        f.truncate(MAX_TRACE_BYTES + 1)
    code, _, last, full, seconds = cli("simulate", "--trace", path)
    assert_one_line(code, last, full, str(path), "more than the 64 MiB")
    assert seconds < 10


def test_run_log_claiming_a_huge_n_is_refused_before_allocating(tmp_path):
    """A 1 KB log whose RunConfig says n=2^23 (plot would allocate rounds x n arrays)."""
    from gcode.telemetry.messages import round_record, run_config
    from gcode.telemetry.runlog import RunLogWriter
    with RunLogWriter(tmp_path / "run", run_config(source="sim", scheme="uncoded", n=1 << 23)) as w:
        for r in range(3):
            w.write_round(round_record(round=r, plans=[[] for _ in range(4)],
                                       arrival_s=np.ones(4), duration_s=1.0))
    assert (tmp_path / "run.pb").stat().st_size < 4096
    for argv in (["plot", tmp_path / "run.pb", "--out", tmp_path / "plots"],
                 ["replay", tmp_path / "run.pb", "--rounds"]):
        code, _, last, full, seconds = cli(*argv)
        assert_one_line(code, last, full, "run.pb", "has 4 workers", "n=8388608")
        assert seconds < 10
    assert not list((tmp_path / "plots").glob("*.png"))


def test_deeply_nested_scheme_parameter_in_a_run_log(tmp_path):
    """A parameter value nested 100 000 deep: replay shows it as text instead of recursing."""
    from gcode.telemetry.messages import run_config
    from gcode.telemetry.runlog import RunLogWriter
    deep = "[" * 100_000 + "]" * 100_000
    with RunLogWriter(tmp_path / "run", run_config(source="sim", scheme="gc", n=2,
                                                   params={"s": 1, "x": deep})):
        pass
    code, out, _, full, seconds = cli("replay", tmp_path / "run.pb")
    assert code == 0 and "Traceback" not in full and "x=[[[" in out and seconds < 10


def test_a_checkpoint_claiming_a_huge_round_is_checked_without_building_it(tmp_path):
    tree = _full_tree()
    tree["round"] = 99_999_999
    write_checkpoint(tmp_path / "ck", 99_999_999, tree)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="round is 99999999 but the scheme's event log "
                                              "records rounds 0..3"):
        read_checkpoint(tmp_path / "ck")
    assert time.monotonic() - start < 5


def test_deeply_nested_jsonl_run_log_line(tmp_path):
    path = _write(tmp_path / "run.jsonl", '{"config": {"n": 1}}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    code, _, last, full, _ = cli("replay", path)
    assert_one_line(code, last, full, str(path), "line 2")


def test_non_utf8_jsonl_run_log_names_the_file(tmp_path):
    path = _write(tmp_path / "run.jsonl", b'{"config": {"n": 1}}\n\xff\xfe\n')
    code, _, last, full, _ = cli("replay", path)
    assert_one_line(code, last, full, str(path), "not UTF-8")


def test_overlong_varint_names_the_file_and_byte(tmp_path):
    from gcode.telemetry.runlog import MAGIC
    path = _write(tmp_path / "run.pb", MAGIC + b"\xff" * 12)
    code, _, last, full, _ = cli("replay", path)
    assert_one_line(code, last, full, str(path), f"at byte {len(MAGIC)}", "varint")


# ---- A'. checkpoint archives: deflate bombs, lying npy headers, deep JSON --------------------
def _checkpoint(tmp_path, tree=None, round_=4):
    return write_checkpoint(tmp_path / "ck", round_, tree or _full_tree(round_))


def _deflate_bomb(folder):
    with zipfile.ZipFile(folder / ckpt.ARRAYS_FILE, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("bomb.npy", "w", force_zip64=True) as f:  # 64 MiB of zeros, ~64 KiB stored
            np.lib.format.write_array(f, np.zeros(8 << 20), allow_pickle=False)
    _rehash(folder)


def _huge_npy_header(folder):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10 ** 14,)})
    with zipfile.ZipFile(folder / ckpt.ARRAYS_FILE, "a") as zf:
        zf.writestr("huge.npy", header.getvalue() + b"\0" * 64)
    _rehash(folder)


def _deep_state(folder):
    text = (folder / ckpt.STATE_FILE).read_text()
    (folder / ckpt.STATE_FILE).write_text(text[:-1] + ',"deep":' + "[" * 50_000 + "]" * 50_000 + "}")
    _rehash(folder)


def _deep_manifest(folder):
    (folder / ckpt.MANIFEST_FILE).write_text('{"a":' + "[" * 50_000 + "]" * 50_000 + "}")


ARCHIVE_CASES = [
    ("deflate bomb in arrays.npz", _deflate_bomb, "'bomb.npy' is compressed"),
    ("npy header claiming 1e14 values", _huge_npy_header, "claims shape (100000000000000,)"),
    ("deeply nested state.json", _deep_state, "nested more than 64 levels"),
    ("deeply nested manifest.json", _deep_manifest, "manifest.json is not a valid manifest"),
]


@pytest.mark.parametrize("label,damage,message", ARCHIVE_CASES, ids=[c[0] for c in ARCHIVE_CASES])
def test_checkpoint_archives_are_read_within_bounds(tmp_path, label, damage, message):
    folder = _checkpoint(tmp_path)
    damage(folder)
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(tmp_path / "ck")
    assert time.monotonic() - start < 5
    assert str(folder) in str(info.value) and message in str(info.value), str(info.value)


# ---- B. shared, linked and edited checkpoint directories ----------------------------------------
def test_a_second_run_id_fails_at_its_first_write_and_touches_nothing(tmp_path):
    _checkpoint(tmp_path)
    before = _snapshot(tmp_path / "ck")
    with pytest.raises(CheckpointError) as info:
        write_checkpoint(tmp_path / "ck", 6, _full_tree(6, run_id="b" * 32))
    msg = str(info.value)
    assert msg.startswith("checkpoint.dir: ") and "round-00000004 of run aaaaaaaaaaaaaaaa" in msg
    assert "this run (bbbbbbbbbbbbbbbb)" in msg
    assert _snapshot(tmp_path / "ck") == before and read_checkpoint(tmp_path / "ck").round == 4


def test_the_checkpoint_directory_lock_refuses_a_second_process(tmp_path):
    """A real second process holds checkpoint.dir's lock: this one refuses to start and names
    the holder; once that process is gone (even SIGKILLed) the directory is free."""
    from gcode.runtime.checkpoint_dir import claimed
    ck = tmp_path / "ck"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from gcode.config import TrainConfig\n"
         "from gcode.runtime.checkpoint_dir import claimed\n"
         f"cfg = TrainConfig().replace(**{{'checkpoint.dir': {str(ck)!r}}})\n"
         "with claimed(cfg):\n"
         "    print('held', flush=True); time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = TrainConfig().replace(**{"checkpoint.dir": str(ck)})
        with pytest.raises(ConfigError) as info, claimed(cfg):
            pass
        msg = str(info.value)
        assert msg.startswith(f"checkpoint.dir: {ck.resolve()} is in use by another gcode run")
        assert f"pid {holder.pid}" in msg
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with claimed(cfg):  # the kernel released the dead holder's lock
        pass


def test_a_replaced_lock_file_stops_the_writer(tmp_path):
    from gcode.runtime.checkpoint_dir import LOCK_FILE, claimed
    ck = tmp_path / "ck"
    with claimed(TrainConfig().replace(**{"checkpoint.dir": str(ck)})):
        write_checkpoint(ck, 2, _full_tree(2))
        (ck / LOCK_FILE).unlink()
        (ck / LOCK_FILE).write_text("{}")  # another process's lock, on another inode
        with pytest.raises(CheckpointError, match=r"^checkpoint\.dir: the lock file .* was removed "
                                                  r"or replaced"):
            write_checkpoint(ck, 4, _full_tree(4))
    assert read_checkpoint(ck).round == 2


def test_a_symlinked_round_folder_is_refused(tmp_path):
    other = write_checkpoint(tmp_path / "other", 6, _full_tree(6, run_id="b" * 32))
    (tmp_path / "ck").mkdir()
    os.symlink(other, tmp_path / "ck" / "round-00000006")
    with pytest.raises(CheckpointError, match="round-00000006 is a symbolic link"):
        read_checkpoint(tmp_path / "ck")


def test_a_renamed_round_folder_is_refused(tmp_path):
    """round-00000010 holding round 18 (a copy of another run's folder under a new name)."""
    folder = write_checkpoint(tmp_path / "ck", 18, _full_tree(18))
    folder.rename(tmp_path / "ck" / "round-00000010")
    with pytest.raises(CheckpointError, match="named for round 10 but its manifest is of round 18"):
        read_checkpoint(tmp_path / "ck")


def test_a_directory_mixing_two_runs_is_refused_on_resume(tmp_path):
    write_checkpoint(tmp_path / "ck", 4, _full_tree(4))
    other = write_checkpoint(tmp_path / "other", 6, _full_tree(6, run_id="b" * 32))
    other.rename(tmp_path / "ck" / other.name)  # moved in by hand: the newest is the other run's
    with pytest.raises(CheckpointError, match="mixes checkpoints of two runs"):
        read_checkpoint(tmp_path / "ck")


def _edit_state(folder, edit):
    """Edit state.json's JSON and rehash, as someone tampering with a checkpoint would."""
    doc = json.loads((folder / ckpt.STATE_FILE).read_text())
    edit(doc)
    (folder / ckpt.STATE_FILE).write_text(json.dumps(doc))
    _rehash(folder)


def _edit_manifest(folder, edit):
    m = json.loads((folder / ckpt.MANIFEST_FILE).read_text())
    m.pop("manifest_sha256")
    edit(m)
    m["manifest_sha256"] = hashlib.sha256(ckpt._canonical(m)).hexdigest()
    (folder / ckpt.MANIFEST_FILE).write_text(json.dumps(m))


def _round_edited(folder):
    """The issue's case: the round moved from 4 to 10 in state, manifest and folder name."""
    _edit_state(folder, lambda d: d.update(round=10))
    _edit_manifest(folder, lambda m: m.update(round=10))
    folder.rename(folder.with_name("round-00000010"))


def _nan_weights(folder):
    arrays = dict(np.load(folder / ckpt.ARRAYS_FILE))
    key = next(k for k in arrays if k.endswith("/weight"))
    arrays[key] = np.full_like(arrays[key], np.nan)
    ckpt._write_npz(folder / ckpt.ARRAYS_FILE, arrays)
    _rehash(folder)


TAMPER_CASES = [
    ("round edited, rechecksummed", _round_edited,
     "round is 10 but the scheme's event log records rounds 0..3"),
    ("negative counter", lambda f: _edit_state(f, lambda d: d["coordinator"].update(waits=-3)),
     "coordinator.waits must be an integer >= 0, got -3"),
    ("decoded count edited", lambda f: _edit_state(f, lambda d: d["coordinator"].update(decoded=9)),
     "coordinator.decoded=9 but the models took 4 optimizer steps"),
    ("updates edited", lambda f: _edit_state(f, lambda d: d["coordinator"].update(updates=[9], decoded=9)),
     "coordinator.decoded=9 but the scheme's event log decodes 4 jobs"),
    ("runtime NaN", lambda f: _edit_state(f, lambda d: d["run"].update(runtime_s={"$float": "nan"})),
     "run.runtime_s must be a finite number >= 0"),
    ("NaN weights", _nan_weights, "holds 6 non-finite values (model 0 had diverged)"),
    ("manifest files is a list", lambda f: _edit_manifest(f, lambda m: m.update(files=[])),
     "'files' must be an object, got a list"),
    ("manifest bytes is text", lambda f: _edit_manifest(
        f, lambda m: m["files"]["state.json"].update(bytes="12")),
     "files.state.json.bytes must be an integer >= 0, got '12'"),
    ("manifest of another run", lambda f: _edit_manifest(f, lambda m: m.update(run_id="c" * 32)),
     "state.json is of run aaaaaaaaaaaaaaaa but the manifest of run cccccccccccccccc"),
]


@pytest.mark.parametrize("label,damage,message", TAMPER_CASES, ids=[c[0] for c in TAMPER_CASES])
def test_edited_and_rechecksummed_checkpoints_are_refused(tmp_path, label, damage, message):
    damage(_checkpoint(tmp_path))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(tmp_path / "ck")
    assert message in str(info.value) and str(tmp_path / "ck") in str(info.value), str(info.value)


def _coordinator_for(tree):
    """The parts of a resuming coordinator that check_against reads: real torch models and
    optimizers built like the run's."""
    import torch

    from gcode.train import FlatModel
    torch.manual_seed(1)
    model = FlatModel(torch.nn.Linear(3, 2))
    return SimpleNamespace(M=1, models=[model],
                           optimizers=[torch.optim.Adam(model.module.parameters(), lr=0.01)],
                           spec=SimpleNamespace(num_params=8), n=2)


@pytest.mark.parametrize("label,edit,message", [
    ("adam state of the wrong shape",
     lambda t: t["models"][0]["optimizer"]["state"][0].update(exp_avg=np.zeros(3, np.float32)),
     "models[0].optimizer.state[0]['exp_avg'] has shape (3,), parameter 0 has shape (2, 3)"),
    ("parameter of the wrong shape",
     lambda t: t["models"][0]["params"].update(bias=np.zeros(5, np.float32)),
     "models[0].params['bias'] has shape (5,), the model's is (2,)"),
    ("optimizer state of a parameter that does not exist",
     lambda t: t["models"][0]["optimizer"]["state"].update({7: {"step": np.float32(1)}}),
     "models[0].optimizer.state[7] names parameter 7; the model has 2"),
], ids=["adam shape", "param shape", "unknown param index"])
def test_restored_state_must_fit_the_run(tmp_path, label, edit, message):
    tree = _full_tree()
    edit(tree)
    _checkpoint(tmp_path, tree)
    ck = read_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError) as info:
        ckpt.restore_coordinator(_coordinator_for(tree), ck)
    assert str(info.value) == f"checkpoint {ck.path} does not fit this run: {message}"


# ---- C. the monitor: port squatters, lockout, silent listeners ---------------------------------
def _squat(family, host, port=0):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, port))
    s.listen()
    return s


def _ipv6():
    from gcode.telemetry.endpoints import has_ipv6_loopback
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")


@pytest.mark.parametrize("family,host", [(socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")],
                         ids=["squatter on [::1]", "squatter on 127.0.0.1"])
def test_monitor_refuses_a_partial_bind(family, host):
    """Another process holds one of the addresses `localhost` stands for: the monitor refuses
    to start (gRPC alone would serve on the other and report success)."""
    from gcode.telemetry.monitor import MonitorServer
    _ipv6()
    squatter = _squat(family, host)
    port = squatter.getsockname()[1]
    try:
        with pytest.raises(ValueError) as info:
            MonitorServer(f"localhost:{port}", token="T")
        target = f"[::1]:{port}" if family == socket.AF_INET6 else f"127.0.0.1:{port}"
        assert str(info.value).startswith(f"cannot bind the monitor to {target} (Address already in use)")
        assert "one of the addresses 'localhost' stands for" in str(info.value)
    finally:
        squatter.close()


def test_gcode_train_with_a_squatted_monitor_port_stops_before_ray(tmp_path):
    _ipv6()
    squatter = _squat(socket.AF_INET6, "::1")
    port = squatter.getsockname()[1]
    try:
        code, _, last, full, seconds = cli("train", "--monitor", f"localhost:{port}",
                                           "--monitor-token", "T")
    finally:
        squatter.close()
    assert_one_line(code, last, full, f"[::1]:{port}", "Address already in use")
    assert "serving on" not in full and seconds < 20


def test_the_client_sends_its_token_only_where_the_server_is():
    """The server holds 127.0.0.1:P (named explicitly); a squatter holds [::1]:P and records
    what it receives. `gcode watch localhost:P` resolves localhost as the server does and dials
    127.0.0.1: it gets the run, and the squatter gets no connection at all."""
    from gcode.telemetry import cli as tcli
    from gcode.telemetry.messages import round_record, run_summary
    from gcode.telemetry.monitor import MonitorServer
    _ipv6()
    with MonitorServer("127.0.0.1:0", token="T") as server:
        try:
            squatter = _squat(socket.AF_INET6, "::1", server.port)
        except OSError:
            pytest.skip("the port is taken on ::1 as well")
        squatter.settimeout(0.05)
        got, done = [], threading.Event()

        def listen():
            while not done.is_set():
                with contextlib.suppress(OSError):
                    conn, _ = squatter.accept()
                    conn.settimeout(2)
                    got.append(conn.recv(65536))
        t = threading.Thread(target=listen)
        t.start()
        server.publish(round_record(round=0, plans=[[]], arrival_s=[1.0], duration_s=1.0))
        server.finish(run_summary(runtime_s=1.0, rounds=1, waits=0, decoded_jobs=0))
        out = io.StringIO()
        assert tcli.watch(f"localhost:{server.port}", token="T", as_json=True, out=out,
                          err=io.StringIO()) == 0
        time.sleep(0.3)
        done.set()
        t.join()
        squatter.close()
    assert json.loads(out.getvalue())["round"] == 0
    assert got == []


def test_idle_watchers_cannot_lock_the_operator_out():
    """max_watchers + 4 idle WatchRounds streams (their clients never read): GetStatus and
    RequestStop still answer at once; the 4 extra streams get RESOURCE_EXHAUSTED naming the
    limit, and a freed slot serves the next watcher."""
    from gcode.telemetry.messages import WatchRequest
    from gcode.telemetry.monitor import MonitorClient, MonitorServer
    with MonitorServer(max_watchers=3) as server:
        clients = [MonitorClient(server.target) for _ in range(7)]
        calls = [c._stub.WatchRounds(WatchRequest(from_round=0)) for c in clients]
        time.sleep(1.0)
        with MonitorClient(server.target) as control:
            start = time.monotonic()
            assert control.status(timeout=5).round == -1
            assert control.request_stop("operator", timeout=5).accepted
            assert time.monotonic() - start < 5
        rejected = [call for call in calls if call.done()]
        codes = {call.code() for call in rejected}
        assert len(rejected) == 4 and codes == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert "3 WatchRounds streams are open" in rejected[0].details()
        for call in calls:
            call.cancel()
        for c in clients:
            c.close()


def test_watch_against_a_silent_listener_gives_up_within_its_bound():
    """A listener that accepts TCP and never speaks: gcode watch gives up within
    --give-up-after (plus the 2 s status probe), with one line and status 1."""
    from gcode.telemetry import cli as tcli
    silent = _squat(socket.AF_INET, "127.0.0.1")
    err = io.StringIO()
    start = time.monotonic()
    try:
        code = tcli.watch(f"127.0.0.1:{silent.getsockname()[1]}", out=io.StringIO(), err=err,
                          give_up_after_s=3.0)
    finally:
        silent.close()
    assert code == 1 and time.monotonic() - start < 3.0 + 2 + 3
    assert err.getvalue().strip().splitlines()[-1].startswith("gcode watch: monitor 127.0.0.1:")
    assert "gave up after 3 s of trying" in err.getvalue()


@pytest.mark.parametrize("argv,message", [
    (["watch", "no-such-host.invalid:5"], "monitor host 'no-such-host.invalid' does not resolve"),
    (["watch", "127.0.0.1:5", "--give-up-after", "0"], "argument --give-up-after: must be a positive"),
    (["watch", "127.0.0.1:5", "--give-up-after", "nan"], "argument --give-up-after"),
    (["watch", "127.0.0.1:x"], "port 'x' is not a number"),
], ids=["unresolvable host", "zero bound", "nan bound", "bad port"])
def test_watch_arguments(argv, message):
    code, _, last, full, _ = cli(*argv)
    assert_one_line(code, last, full, message)


# ---- D. numbers: every command validates them the same way ----------------------------------------
NUMBER_CASES = [
    (["simulate", "--time-scale", "-1"], "argument --time-scale: must be a positive finite number"),
    (["simulate", "--time-scale", "inf"], "argument --time-scale: must be a finite number"),
    (["simulate", "--load-slope", "nan"], "argument --load-slope: must be a finite number, got 'nan'"),
    (["simulate", "--load-slope", "-2"], "argument --load-slope: must be a finite number >= 0"),
    (["tune", "--time-scale", "0"], "argument --time-scale: must be a positive finite number"),
    (["tune", "--load-slope", "nan"], "argument --load-slope: must be a finite number, got 'nan'"),
    (["bench", "trace", "--load-slope", "nan"], "argument --load-slope: must be a finite number"),
    (["bench", "live", "--time-scale", "-1"], "argument --time-scale: must be a positive"),
    (["train", "--time-scale", "nan"], "argument --time-scale: must be a finite number"),
    (["train", "--time-scale", "-1"], "inject.time_scale: must be a positive finite number"),
    (["simulate", "--mu", "nan"], "argument --mu: must be a finite number"),
    (["simulate", "--policy", "deadline", "--deadline", "-1"], "argument --deadline: must be a positive"),
    (["simulate", "--n", "0"], "argument --n: must be >= 1, got 0"),
    (["simulate", "--n", "300"], "--n: the trace has 256 workers (columns), fewer than n=300"),
    (["tune", "--n", "-4"], "argument --n: must be >= 1, got -4"),
    (["simulate", "--jobs", "1_0"], "argument --jobs: must be a whole number, got '1_0'"),
    (["train", "--jobs", "1_0"], "argument --jobs: must be a whole number, got '1_0'"),
    (["verify", "--scheme", "gc", "--s", "1", "--n", "100000"], "--n must be <= 4096, got 100000"),
    (["verify", "--scheme", "gc", "--s", "1", "--n", "64", "--rounds", "1000000000"],
     "worker-rounds, more than the 1e+07"),
    (["train", "--jobs", "1000000000"], "scheme.jobs: must be <= 10000000, got 1000000000"),
    (["train", "--workers", "100000"], "cluster.workers: must be <= 4096, got 100000"),
    (["train", "--jobs", "9000000", "--workers", "64", "--scheme", "gc", "--gc-code", "fr"],
     "scheme.jobs: 9000000 jobs x 64 workers need a 4.3 GiB table"),
    (["train", "--inject", "bursty", "--inject-param", "base=nan", "--inject-param", "B=1",
      "--inject-param", "W=2", "--inject-param", "lam=1"], "inject.params: base must be a real number"),
    (["train", "--inject", "bursty"], "missing parameters 'B', 'W', 'lam' for model 'bursty'"),
]


@pytest.mark.parametrize("argv,message", NUMBER_CASES, ids=[" ".join(c[0]) for c in NUMBER_CASES])
def test_numbers_are_validated_alike_and_never_coerced(argv, message):
    code, _, last, full, _ = cli(*argv)
    assert_one_line(code, last, full, message)


def test_huge_jobs_in_a_config_file_name_the_field(tmp_path):
    """jobs = 1e18 in TOML was blamed on `inject: array is too big`."""
    path = _write(tmp_path / "c.toml", "[scheme]\njobs = 1000000000000000000\n")
    code, _, last, full, _ = cli("train", "--config", path)
    assert_one_line(code, last, full, "scheme.jobs: must be <= 10000000")


def test_json_output_never_holds_nan():
    from gcode.jsonout import dumps
    assert json.loads(dumps({"a": float("nan"), "b": [np.float64("inf"), np.int64(3)]})) == \
        {"a": None, "b": [None, 3]}


# ---- E. output paths that cannot be written: one line, before any work ---------------------------
def test_output_paths(tmp_path):
    (tmp_path / "run.pb").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "logs.jsonl").mkdir()
    cases = [
        (["simulate", "--scheme", "gc", "--s", "3", "--log", tmp_path / "run"],
         f"--log: {tmp_path / 'run.pb'} is a directory; give a file path"),
        (["plot", tmp_path / "nope.pb", "--out", tmp_path / "file"],
         f"--out: {tmp_path / 'file'} is a file, not a directory"),
        (["train", "--log-jsonl", tmp_path / "logs.jsonl"],
         f"log.jsonl: {tmp_path / 'logs.jsonl'} is a directory"),
        (["train", "--run-log", tmp_path / "run"], f"log.run_log: {tmp_path / 'run.pb'} is a directory"),
        (["train", "--checkpoint-dir", tmp_path / "file" / "ck"],
         f"checkpoint.dir: {tmp_path / 'file' / 'ck'}: {tmp_path / 'file'} is a file"),
        (["bench", "decode", "--out", tmp_path / "file"], "--out: "),
    ]
    for argv, message in cases:
        code, _, last, full, seconds = cli(*argv)
        assert_one_line(code, last, full, message)
        assert seconds < 20, argv


def test_two_writers_never_share_a_log(tmp_path):
    """A second run given the same --run-log or --log-jsonl path is refused; the first run's
    log is neither truncated nor interleaved."""
    from gcode.runtime.runlog import JsonlWriter
    from gcode.telemetry.messages import run_config
    from gcode.telemetry.runlog import RunLogError, RunLogWriter, read_run_log
    with RunLogWriter(tmp_path / "run", run_config(source="sim", scheme="uncoded", n=2)):
        before = (tmp_path / "run.pb").read_bytes()
        with pytest.raises(RunLogError, match=r"^run log .*run\.pb is being written by another "
                                              r"process"):
            RunLogWriter(tmp_path / "run", run_config(source="sim", scheme="gc", n=2))
        assert (tmp_path / "run.pb").read_bytes() == before
    assert read_run_log(tmp_path / "run.pb").config.scheme == "uncoded"
    with JsonlWriter(tmp_path / "r.jsonl") as first:
        first.write({"round": 0})
        with pytest.raises(ConfigError, match=r"^log\.jsonl: .*r\.jsonl is being written"):
            JsonlWriter(tmp_path / "r.jsonl")
        first.write({"round": 1})
    assert (tmp_path / "r.jsonl").read_text() == '{"round": 0}\n{"round": 1}\n'


def _full_disk(path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    os.symlink("/dev/full", path)


def test_a_run_log_on_a_full_disk(tmp_path):
    """The .jsonl half of a run log sits on a full disk (/dev/full: every write is ENOSPC)."""
    _full_disk(tmp_path / "run.jsonl")
    code, _, last, full, _ = cli("simulate", "--scheme", "gc", "--s", "3", "--log", tmp_path / "run")
    assert_one_line(code, last, full, f"run log {tmp_path / 'run.jsonl'}: cannot write: No space "
                                      f"left on device")


def test_a_live_jsonl_log_on_a_full_disk(tmp_path):
    from gcode.runtime.health import RunFailed
    from gcode.runtime.runlog import JsonlWriter
    _full_disk(tmp_path / "r.jsonl")
    writer = JsonlWriter(tmp_path / "r.jsonl")
    with pytest.raises(RunFailed, match=r"^log\.jsonl .*r\.jsonl: cannot write: No space left on device"):
        writer.write({"round": 0})
    writer.close()


# ---- F. messages name the file or field; nothing is accepted silently ------------------------------
@pytest.mark.parametrize("name,text,message", [
    ("c.toml", '[faults]\n"1_0" = [0, "raise"]\n',
     "faults.1_0: round key must be a decimal integer, got '1_0'"),
    ("c.yaml", "faults:\n  true: [0, raise]\n", "faults.True: round key must be a decimal integer, got True"),
    ("c.yaml", "faults:\n  ' 3': [0, raise]\n", "round key must be a decimal integer, got ' 3'"),
], ids=["'1_0' key", "true key", "padded key"])
def test_fault_round_keys_are_not_coerced(tmp_path, name, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(_write(tmp_path / name, text))


def test_inject_params_are_not_coerced():
    from gcode.runtime.cli_args import parse_value
    assert [parse_value(v) for v in ("1_0", "nan", "inf", "3", "0.5", "1e-3", "true")] == \
        ["1_0", "nan", "inf", 3, 0.5, 0.001, True]


def test_nothing_listening_at_address_is_a_bounded_one_line_error():
    code, _, last, full, seconds = cli("train", "--address", "127.0.0.1:1", timeout_s=30)
    assert_one_line(code, last, full, "address: nothing answers at 127.0.0.1:1",
                    "waited at most 5 s")  # cluster.address, as gcode.fit names it: scaling.address
    assert seconds < 15


@pytest.mark.parametrize("address", ["foo", "127.0.0.1:99999", "ray://host", "h:p"])
def test_malformed_addresses_name_the_field(address):
    with pytest.raises(ConfigError, match=r"^cluster\.address: expected HOST:PORT"):
        from_dict({"cluster": {"address": address}})


def test_cli_end_to_end_prints_one_line_without_traceback(tmp_path):
    """One real `gcode` process per failure class, as a user would see it."""
    path = _write(tmp_path / "c.toml", "[train]\nlr = 0.1\n".encode("utf-16"))
    for argv, needle in [(["train", "--config", str(path)], "looks like UTF-16"),
                         (["simulate", "--load-slope", "nan"], "argument --load-slope")]:
        proc = subprocess.run([sys.executable, "-m", "gcode", *argv], capture_output=True,
                              text=True, timeout=120, check=False, cwd=REPO)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert needle in lines[-1]
