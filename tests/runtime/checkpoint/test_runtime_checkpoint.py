"""Checkpoint format, atomic writes, verification and resume-config checks. No Ray."""

import argparse
import json
import os
import zipfile

import numpy as np
import pytest

from gcode.config import ConfigError, TrainConfig, from_dict
from gcode.runtime.checkpoint import (
    ARRAYS_FILE,
    MANIFEST_FILE,
    STATE_FILE,
    CheckpointError,
    check_resume_config,
    checkpoints_in,
    read_checkpoint,
    resolve,
    write_checkpoint,
)


def tree(r=4, scale=1.0):
    import torch
    return {
        "format": "gcode-checkpoint", "version": 1, "round": r,
        "config": TrainConfig().to_dict(),
        "w": np.arange(6, dtype=np.float32).reshape(2, 3) * scale,
        "acc": np.linspace(0, 1, 5) / 3.0,                     # fp64, not representable in fp32
        "t": torch.tensor([1.5, -2.25], dtype=torch.float64),
        "step": torch.tensor(7.0),                               # 0-d, as Adam's step
        "tuple": (1, 2.5, "x", None, True), "inf": float("inf"), "nan": float("nan"),
        "ints": {0: "a", 3: (1, 2)},                             # non-string keys
        "sig": {(2, (0, 1), (1.0, 1.0)): [1, 0, 1]},            # tuple keys (decoder signatures)
        "dollar": {"$array": 1}, "nested": [{"x": np.int64(3), "y": np.float32(0.1)}],
    }


def same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and \
            np.array_equal(a, b, equal_nan=True)
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_round_trip_is_exact_and_pickle_free(tmp_path):
    t = tree()
    path = write_checkpoint(tmp_path, 4, t)
    assert path.name == "round-00000004"
    assert sorted(os.listdir(path)) == sorted([ARRAYS_FILE, MANIFEST_FILE, STATE_FILE])
    back = read_checkpoint(tmp_path).tree
    t["t"], t["step"] = t["t"].numpy(), t["step"].numpy()   # torch tensors come back as numpy
    t["nested"][0]["y"] = float(np.float32(0.1))
    t["nested"][0]["x"] = 3
    assert same(back, t)
    # every array entry loads with allow_pickle=False and is a plain .npy
    with np.load(path / ARRAYS_FILE, allow_pickle=False) as z:
        assert set(z.files) >= {"/w", "/acc", "/t", "/step"}
    doc = json.loads((path / STATE_FILE).read_text())
    assert doc["w"] == {"$array": "/w"} and doc["inf"] == {"$float": "inf"}


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="cannot store object"):
        write_checkpoint(tmp_path, 1, {"format": "gcode-checkpoint", "round": 1,
                                       "x": np.array([{}], dtype=object)})
    with pytest.raises(CheckpointError, match="cannot store a set"):
        write_checkpoint(tmp_path, 1, {"x": {1, 2}})
    assert checkpoints_in(tmp_path) == []


def test_newest_is_resumed_and_older_ones_are_pruned_after_the_new_one_is_complete(tmp_path):
    for r in (2, 4, 6, 8):
        write_checkpoint(tmp_path, r, tree(r), keep=2)
    assert [p.name for p in checkpoints_in(tmp_path)] == ["round-00000006", "round-00000008"]
    assert resolve(tmp_path).name == "round-00000008"
    assert read_checkpoint(tmp_path / "round-00000006").round == 6
    # resuming from 6 and writing 7 abandons the later timeline (round 8)
    write_checkpoint(tmp_path, 7, tree(7), keep=2)
    assert [p.name for p in checkpoints_in(tmp_path)] == ["round-00000006", "round-00000007"]


def test_a_crash_before_the_rename_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    write_checkpoint(tmp_path, 2, tree(2))

    def crash(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(CheckpointError) as info:
        write_checkpoint(tmp_path, 4, tree(4))
    msg = str(info.value)
    assert str(tmp_path) in msg and "No space left" in msg and "round-00000002 is intact" in msg
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["round-00000002"]  # no temp folder left
    assert read_checkpoint(tmp_path).round == 2


def test_interrupted_writes_are_ignored_and_cleaned(tmp_path):
    write_checkpoint(tmp_path, 2, tree(2))
    torn = tmp_path / ".tmp-round-00000004-abc"
    torn.mkdir()
    (torn / STATE_FILE).write_text("{")
    assert read_checkpoint(tmp_path).round == 2
    write_checkpoint(tmp_path, 4, tree(4))
    assert not torn.exists()


def _damage_cases():
    def flip(path):
        data = bytearray((path / ARRAYS_FILE).read_bytes())
        data[-200] ^= 0xFF
        (path / ARRAYS_FILE).write_bytes(bytes(data))

    def truncate(path):
        data = (path / STATE_FILE).read_bytes()
        (path / STATE_FILE).write_bytes(data[: len(data) // 2])

    def edit_state(path):  # same size, one value changed
        text = (path / STATE_FILE).read_text()
        assert '"lr":0.01' in text
        (path / STATE_FILE).write_text(text.replace('"lr":0.01', '"lr":0.09'))

    def edit_manifest(path):
        m = json.loads((path / MANIFEST_FILE).read_text())
        m["round"] = 99
        (path / MANIFEST_FILE).write_text(json.dumps(m))

    def drop(path):
        (path / ARRAYS_FILE).unlink()

    def no_manifest(path):
        (path / MANIFEST_FILE).unlink()

    return [("flipped byte in arrays", flip, "does not match its SHA-256"),
            ("torn state.json", truncate, "torn write or modified"),
            ("edited state.json", edit_state, "does not match its SHA-256"),
            ("edited manifest", edit_manifest, "does not match its checksum"),
            ("missing arrays", drop, "arrays.npz is missing"),
            ("missing manifest", no_manifest, "no manifest.json")]


@pytest.mark.parametrize("label,damage,message", _damage_cases(), ids=[c[0] for c in _damage_cases()])
def test_damaged_checkpoints_are_detected(tmp_path, label, damage, message):
    write_checkpoint(tmp_path, 2, tree(2))
    path = write_checkpoint(tmp_path, 4, tree(4))
    damage(path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(tmp_path)
    msg = str(info.value)
    assert message in msg and "round-00000004" in msg
    assert "round-00000002" in msg  # the older checkpoint is offered
    assert read_checkpoint(tmp_path / "round-00000002").round == 2


def test_a_pickled_array_is_refused_even_with_a_valid_manifest(tmp_path):
    """A crafted arrays.npz holding an object array (re-hashed, so the manifest agrees) is
    refused: loading uses allow_pickle=False."""
    import hashlib

    from gcode.runtime import checkpoint as ck
    path = write_checkpoint(tmp_path, 2, tree(2))
    with zipfile.ZipFile(path / ARRAYS_FILE, "a") as zf, zf.open("evil.npy", "w") as f:
        np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    m = json.loads((path / MANIFEST_FILE).read_text())
    m.pop("manifest_sha256")
    m["files"][ARRAYS_FILE] = {"bytes": (path / ARRAYS_FILE).stat().st_size,
                               "sha256": ck.sha256_file(path / ARRAYS_FILE)}
    m["manifest_sha256"] = hashlib.sha256(ck.canonical_json(m)).hexdigest()
    (path / MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="allow_pickle"):
        read_checkpoint(path)


def test_unsupported_version_and_empty_dirs(tmp_path):
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        read_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        read_checkpoint(tmp_path / "nope")


def test_resume_config_must_match_except_safe_fields():
    saved = from_dict({"scheme": {"name": "gc", "s": 1, "jobs": 12}, "train": {"lr": 0.5}}).to_dict()
    same_cfg = from_dict({"scheme": {"name": "gc", "s": 1, "jobs": 12}, "train": {"lr": 0.5}})
    check_resume_config(saved, same_cfg)
    safe = same_cfg.replace(**{"log.jsonl": "x.jsonl", "cluster.round_timeout_s": 9.0,
                               "cluster.placement": "pack", "train.check_decode": True,
                               "checkpoint.every": 3, "faults": [{"round": 1, "worker": 0,
                                                                 "kind": "nan"}]})
    check_resume_config(saved, safe)
    check_resume_config(saved, same_cfg.replace(**{"scheme.jobs": 20}))  # extends the run
    with pytest.raises(ConfigError, match=r"^scheme.jobs: is 8, fewer than .* not shortened"):
        check_resume_config(saved, same_cfg.replace(**{"scheme.jobs": 8}))
    for key, value in [("train.lr", 0.1), ("cluster.workers", 6),
                       ("train.seed", 1), ("inject.time_scale", 2.0), ("policy.mu", 0.5)]:
        with pytest.raises(ConfigError) as info:
            check_resume_config(saved, same_cfg.replace(**{key: value}))
        assert info.value.field == key and "differs from the checkpoint" in str(info.value)
    with pytest.raises(ConfigError, match=r"^train.lr: .*also differ: train.seed"):
        check_resume_config(saved, same_cfg.replace(**{"scheme.jobs": 20, "train.lr": 0.1,
                                                       "train.seed": 1}))


def test_a_checkpoint_from_before_a_field_existed_resumes_at_its_default():
    """policy.gap and cluster.transport came after the first checkpoints: one written without
    them ran as their defaults do, so it resumes unless the run sets them otherwise."""
    cfg = from_dict({"scheme": {"name": "gc", "s": 1, "jobs": 12}})
    older = cfg.to_dict()
    del older["policy"]["gap"], older["cluster"]["transport"]
    check_resume_config(older, cfg)
    with pytest.raises(ConfigError) as info:
        check_resume_config(older, cfg.replace(**{"policy.gap": 0.2}))
    assert info.value.field == "policy.gap"


def test_checkpoint_config_fields_and_flags(tmp_path):
    from gcode.cli.train import add_train_arguments, config_from_args
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    cfg = config_from_args(p.parse_args(["--checkpoint-dir", str(tmp_path / "ck"),
                                         "--checkpoint-every", "3", "--checkpoint-keep", "1"]))
    assert (cfg.checkpoint.dir, cfg.checkpoint.every, cfg.checkpoint.keep) == \
        (str(tmp_path / "ck"), 3, 1)
    for data, field in [({"checkpoint": {"every": 0}}, "checkpoint.every"),
                        ({"checkpoint": {"keep": 0}}, "checkpoint.keep"),
                        ({"checkpoint": {"every": "often"}}, "checkpoint.every"),
                        ({"checkpoint": {"dir": ""}}, "checkpoint.dir"),
                        ({"checkpoint": {"resume": str(tmp_path / "none")}}, "checkpoint.resume"),
                        ({"checkpoint": {"dirr": "x"}}, "checkpoint.dirr")]:
        with pytest.raises(ConfigError) as info:
            from_dict(data)
        assert info.value.field == field
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="^checkpoint.dir: .* is not a directory"):
        from_dict({"checkpoint": {"dir": str(tmp_path / "file")}})


def test_an_auto_checkpoint_from_before_one_model_resumes_with_the_models_it_trained(tmp_path):
    """auto once defaulted to M = 2 models: its checkpoints left train.models unset, which now
    means one model; they read as the M the run trained (and nothing else changes)."""
    from gcode.runtime.checkpoint.files import Checkpoint
    old_auto = {"scheme": {"name": "auto"}, "train": {"models": None, "mode": "concurrent"}}
    ck = Checkpoint(tmp_path, 4, {"config": old_auto, "run": {"models": 2}})
    assert ck.config["train"]["models"] == 2 and ck.config["scheme"] == old_auto["scheme"]
    one = Checkpoint(tmp_path, 4, {"config": old_auto, "run": {"models": 1}})
    assert one.config["train"]["models"] is None
    msgc = {"scheme": {"name": "msgc"}, "train": {"models": None}}
    assert Checkpoint(tmp_path, 4, {"config": msgc, "run": {"models": 2}}).config == msgc
