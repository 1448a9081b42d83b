"""Resuming with another optimizer than the one that wrote the checkpoint (issue 29): one line
naming both optimizers, before anything is loaded, through the in-process transport (no Ray).
A checkpoint written before checkpoints named their optimizer's class is told apart by its
optimizer settings, and still resumes with its own optimizer."""

import dataclasses
import hashlib
import json
import shutil
from functools import partial

import pytest
from runtime_helpers import config

from gcode.runtime.checkpoint import CheckpointError, checkpoints_in, resume_config
from gcode.runtime.checkpoint.files import MANIFEST_FILE, STATE_FILE, canonical_json, sha256_file
from gcode.runtime.run import execute, preset_workload_of
from gcode.runtime.transport.inprocess import Script
from gcode.train.optim import make_optimizer

SCRIPT = Script()
SCHEME = {"name": "gc", "s": 1, "gc_code": "fr", "jobs": 8}


def _run(cfg, optimizer: str | None = None):
    workload = preset_workload_of(cfg)
    if optimizer is not None:  # gcode.fit's optimizer_fn is the user's: a resume may swap it
        workload = dataclasses.replace(workload, optimizer_fn=partial(make_optimizer, optimizer,
                                                                       lr=0.01))
    return execute(cfg, workload, in_process=SCRIPT)[0]


def _rewrite(folder, name, data: bytes) -> None:
    """Replace one file of a checkpoint and recompute the manifest's checksums."""
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest.pop("manifest_sha256")
    manifest["files"][name] = {"bytes": len(data), "sha256": sha256_file(folder / name)}
    manifest["manifest_sha256"] = hashlib.sha256(canonical_json(manifest)).hexdigest()
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def sgd_checkpoint(tmp_path_factory):
    """A checkpoint of a plain SGD run (state: none) and one with momentum (state per param)."""
    root = tmp_path_factory.mktemp("ck")
    out = {}
    for name, params in (("plain", {}), ("momentum", {"momentum": 0.9})):
        cfg = config(scheme=SCHEME, train={"optimizer_params": params},
                     checkpoint={"dir": str(root / name), "every": 3})
        _run(cfg)
        out[name] = checkpoints_in(root / name)[-1]
    return out


@pytest.mark.parametrize("kind", ["plain", "momentum"])
def test_resume_with_a_swapped_optimizer_names_both(sgd_checkpoint, kind):
    path = sgd_checkpoint[kind]
    cfg = resume_config(path).replace(**{"checkpoint.dir": None})
    with pytest.raises(CheckpointError) as info:
        _run(cfg, optimizer="adam")
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    assert "torch.optim.sgd.SGD" in msg and "torch.optim.adam.Adam" in msg, msg
    assert "optimizer_fn" in msg, msg


@pytest.mark.parametrize("kind", ["plain", "momentum"])
def test_a_checkpoint_without_the_optimizer_class(sgd_checkpoint, kind, tmp_path):
    """As written before the class was recorded: a swap is still refused by name (its settings
    differ); resuming with the optimizer that wrote it works."""
    path = tmp_path / sgd_checkpoint[kind].name
    shutil.copytree(sgd_checkpoint[kind], path)
    doc = json.loads((path / STATE_FILE).read_text())
    for model in doc["models"]:
        model["optimizer"].pop("class")
    _rewrite(path, STATE_FILE, json.dumps(doc).encode())  # as an older gcode wrote it
    cfg = resume_config(path).replace(**{"checkpoint.dir": None})
    with pytest.raises(CheckpointError) as info:
        _run(cfg, optimizer="adam")
    msg = str(info.value)
    assert "\n" not in msg and "torch.optim.adam.Adam" in msg and "betas" in msg, msg
    assert _run(cfg)["sessions"] == 2
