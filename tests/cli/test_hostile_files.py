"""The hostile-input catalogue, part 1 (issue 13): small files that would cause huge work, and
shared, linked or tampered checkpoint directories.

Every case ends in one line that names the file or field, with no traceback, within a stated
time bound, and with nothing lost: what was there before is still there and still verifies.
None starts Ray (the live cases are in tests/runtime/test_hostile_runs.py); part 2 is
tests/cli/test_hostile_cli.py.
"""

import hashlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from hostile_helpers import assert_one_line, cli, full_tree, rehash, snapshot, write

from gcode.config import ConfigError, TrainConfig, load_config
from gcode.runtime import checkpoint as ckpt
from gcode.runtime.checkpoint import CheckpointError, read_checkpoint, write_checkpoint

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
    path = write(tmp_path / name, text)
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.monotonic() - start < 60  # a bound against a hang, not a speed
    assert str(info.value).startswith(f"config: {path}: ") and message in str(info.value)


def test_yaml_reads_scientific_notation_as_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-3 as a string; a config must not reject `lr: 1e-3`."""
    assert load_config(write(tmp_path / "c.yaml", "train:\n  lr: 1e-3\n")).train.lr == 0.001


def test_anchor_bomb_with_resume_is_refused_before_the_checkpoint_is_read(tmp_path):
    path = write(tmp_path / "bomb.yaml", BOMB)
    code, _, last, full, seconds = cli("train", "--config", path, "--resume", tmp_path / "nope")
    assert_one_line(code, last, full, "config:", str(path), "YAML bomb")
    assert seconds < 60


def test_trace_over_the_size_limit_is_refused_before_reading(tmp_path):
    from gcode.limits import MAX_TRACE_BYTES
    path = tmp_path / "huge.csv"
    with open(path, "wb") as f:  # sparse: no real disk use
        f.truncate(MAX_TRACE_BYTES + 1)
    code, _, last, full, seconds = cli("simulate", "--trace", path)
    assert_one_line(code, last, full, str(path), f"more than the {MAX_TRACE_BYTES / 2**20:g} MiB")
    assert seconds < 60


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
        assert seconds < 60
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
    assert code == 0 and "Traceback" not in full and "x=[[[" in out and seconds < 60


def test_a_checkpoint_claiming_a_huge_round_is_checked_without_building_it(tmp_path):
    tree = full_tree()
    tree["round"] = 99_999_999
    write_checkpoint(tmp_path / "ck", 99_999_999, tree)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="round is 99999999 but the scheme's event log "
                                              "records rounds 0..3"):
        read_checkpoint(tmp_path / "ck")
    assert time.monotonic() - start < 60  # a bound against a hang, not a speed


def test_deeply_nested_jsonl_run_log_line(tmp_path):
    path = write(tmp_path / "run.jsonl", '{"config": {"n": 1}}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    code, _, last, full, _ = cli("replay", path)
    assert_one_line(code, last, full, str(path), "line 2")


def test_non_utf8_jsonl_run_log_names_the_file(tmp_path):
    path = write(tmp_path / "run.jsonl", b'{"config": {"n": 1}}\n\xff\xfe\n')
    code, _, last, full, _ = cli("replay", path)
    assert_one_line(code, last, full, str(path), "not UTF-8")


def test_overlong_varint_names_the_file_and_byte(tmp_path):
    from gcode.telemetry.runlog import MAGIC
    path = write(tmp_path / "run.pb", MAGIC + b"\xff" * 12)
    code, _, last, full, _ = cli("replay", path)
    assert_one_line(code, last, full, str(path), f"at byte {len(MAGIC)}", "varint")


# ---- A'. checkpoint archives: deflate bombs, lying npy headers, deep JSON --------------------
def _checkpoint(tmp_path, tree=None, round_=4):
    return write_checkpoint(tmp_path / "ck", round_, tree or full_tree(round_))


def _deflate_bomb(folder):
    with (zipfile.ZipFile(folder / ckpt.ARRAYS_FILE, "a", compression=zipfile.ZIP_DEFLATED) as zf,
          zf.open("bomb.npy", "w", force_zip64=True) as f):  # 64 MiB of zeros, ~64 KiB stored
        np.lib.format.write_array(f, np.zeros(8 << 20), allow_pickle=False)
    rehash(folder)


def _huge_npy_header(folder):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10 ** 14,)})
    with zipfile.ZipFile(folder / ckpt.ARRAYS_FILE, "a") as zf:
        zf.writestr("huge.npy", header.getvalue() + b"\0" * 64)
    rehash(folder)


def _deep_state(folder):
    text = (folder / ckpt.STATE_FILE).read_text()
    (folder / ckpt.STATE_FILE).write_text(text[:-1] + ',"deep":' + "[" * 50_000 + "]" * 50_000 + "}")
    rehash(folder)


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
    assert time.monotonic() - start < 60  # a bound against a hang, not a speed
    assert str(folder) in str(info.value) and message in str(info.value), str(info.value)


# ---- B. shared, linked and edited checkpoint directories ----------------------------------------
def test_a_second_run_id_fails_at_its_first_write_and_touches_nothing(tmp_path):
    _checkpoint(tmp_path)
    before = snapshot(tmp_path / "ck")
    with pytest.raises(CheckpointError) as info:
        write_checkpoint(tmp_path / "ck", 6, full_tree(6, run_id="b" * 32))
    msg = str(info.value)
    assert msg.startswith("checkpoint.dir: ") and "round-00000004 of run aaaaaaaaaaaaaaaa" in msg
    assert "this run (bbbbbbbbbbbbbbbb)" in msg
    assert snapshot(tmp_path / "ck") == before and read_checkpoint(tmp_path / "ck").round == 4


def test_the_checkpoint_directory_lock_refuses_a_second_process(tmp_path):
    """A real second process holds checkpoint.dir's lock: this one refuses to start and names
    the holder; once that process is gone (even SIGKILLed) the directory is free."""
    from gcode.runtime.checkpoint.lock import claimed
    ck = tmp_path / "ck"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from gcode.config import TrainConfig\n"
         "from gcode.runtime.checkpoint.lock import claimed\n"
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
    from gcode.runtime.checkpoint.lock import LOCK_FILE, claimed
    ck = tmp_path / "ck"
    with claimed(TrainConfig().replace(**{"checkpoint.dir": str(ck)})):
        write_checkpoint(ck, 2, full_tree(2))
        (ck / LOCK_FILE).unlink()
        (ck / LOCK_FILE).write_text("{}")  # another process's lock, on another inode
        with pytest.raises(CheckpointError, match=r"^checkpoint\.dir: the lock file .* was removed "
                                                  r"or replaced"):
            write_checkpoint(ck, 4, full_tree(4))
    assert read_checkpoint(ck).round == 2


def test_a_symlinked_round_folder_is_refused(tmp_path):
    other = write_checkpoint(tmp_path / "other", 6, full_tree(6, run_id="b" * 32))
    (tmp_path / "ck").mkdir()
    os.symlink(other, tmp_path / "ck" / "round-00000006")
    with pytest.raises(CheckpointError, match="round-00000006 is a symbolic link"):
        read_checkpoint(tmp_path / "ck")


def test_a_renamed_round_folder_is_refused(tmp_path):
    """round-00000010 holding round 18 (a copy of another run's folder under a new name)."""
    folder = write_checkpoint(tmp_path / "ck", 18, full_tree(18))
    folder.rename(tmp_path / "ck" / "round-00000010")
    with pytest.raises(CheckpointError, match="named for round 10 but its manifest is of round 18"):
        read_checkpoint(tmp_path / "ck")


def test_a_directory_mixing_two_runs_is_refused_on_resume(tmp_path):
    write_checkpoint(tmp_path / "ck", 4, full_tree(4))
    other = write_checkpoint(tmp_path / "other", 6, full_tree(6, run_id="b" * 32))
    other.rename(tmp_path / "ck" / other.name)  # moved in by hand: the newest is the other run's
    with pytest.raises(CheckpointError, match="mixes checkpoints of two runs"):
        read_checkpoint(tmp_path / "ck")


def _edit_state(folder, edit):
    """Edit state.json's JSON and rehash, as someone tampering with a checkpoint would."""
    doc = json.loads((folder / ckpt.STATE_FILE).read_text())
    edit(doc)
    (folder / ckpt.STATE_FILE).write_text(json.dumps(doc))
    rehash(folder)


def _edit_manifest(folder, edit):
    m = json.loads((folder / ckpt.MANIFEST_FILE).read_text())
    m.pop("manifest_sha256")
    edit(m)
    m["manifest_sha256"] = hashlib.sha256(ckpt.canonical_json(m)).hexdigest()
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
    ckpt.write_npz(folder / ckpt.ARRAYS_FILE, arrays)
    rehash(folder)


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
    optimizer = torch.optim.Adam(model.module.parameters(), lr=0.01)
    return SimpleNamespace(models=SimpleNamespace(models=[model], optimizers=[optimizer]),
                           num_params=8, n=2)


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
    tree = full_tree()
    edit(tree)
    _checkpoint(tmp_path, tree)
    ck = read_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError) as info:
        ckpt.restore_coordinator(_coordinator_for(tree), ck)
    assert str(info.value) == f"checkpoint {ck.path} does not fit this run: {message}"
