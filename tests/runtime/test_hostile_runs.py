"""Live runs under hostile conditions (issue 13), with real Ray and at most 4 workers:

| condition                                          | outcome                                  |
|----------------------------------------------------|------------------------------------------|
| a second run on a checkpoint directory in use      | refused at start, one line, exit 2; the  |
|                                                    | first run's checkpoints verify, resume   |
|                                                    | to its exact parameters                  |
| a checkpoint of NaN weights                        | refused, naming the model and tensor     |
| a diverged model (train.lr = 1e38)                 | DivergedError within seconds, naming the |
|                                                    | model, job, cause, last good checkpoint  |
| the local raylet SIGKILLed mid-run                 | one line, exit 1, within 30 s; nothing   |
|                                                    | of that Ray instance survives; the       |
|                                                    | checkpoints verify                       |
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import RUN_TOML, config, gcode_process, session_pids, wait_for

from gcode.config import ConfigError, load_config
from gcode.runtime import checkpoint as ckpt
from gcode.runtime import train
from gcode.runtime.checkpoint import CheckpointError, read_checkpoint, resume_config
from gcode.runtime.errors import DivergedError

pytestmark = pytest.mark.ray

GC_FR = {"name": "gc", "s": 1, "gc_code": "fr"}


@pytest.mark.slow
def test_two_runs_on_one_checkpoint_directory(ray_pool, tmp_path):
    """Run A (its own process and Ray, 4 workers) checkpoints into ck every 2 rounds. While it
    runs, run B on the same directory is refused at once, both as `gcode train` (one line,
    exit 2) and through the Python API; A finishes, every checkpoint in ck is A's and verifies,
    and resuming from A's newest checkpoint ends with A's exact parameters."""
    (tmp_path / "run.toml").write_text(RUN_TOML.format(jobs=80, shift=0.15))
    ck = tmp_path / "ck"
    common = ["train", "--config", "run.toml", "--checkpoint-dir", ck, "--checkpoint-every", "2",
              "--json", "--quiet"]
    with gcode_process(common, tmp_path) as first:
        wait_for(ck / "round-00000002", first)
        before = {p.name: (p / "manifest.json").read_bytes() for p in ckpt.checkpoints_in(ck)}
        start = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "gcode", *map(str, common)],
                                check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                                env=dict(os.environ, RAY_AUTH_MODE="disabled"))
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith("gcode: error: ") and (  # checkpoint.dir (run.checkpoint.dir)
            f"checkpoint.dir: {ck.resolve()} is in use by another gcode run (pid {first.pid} on "
            in last), last
        assert time.monotonic() - start < 60
        with pytest.raises(ConfigError, match=r"^checkpoint\.dir: .* is in use by another gcode run"):
            train(load_config(tmp_path / "run.toml").replace(**{"checkpoint.dir": str(ck)}),
                  pool=ray_pool)
        assert first.poll() is None  # A never noticed
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    for name, manifest in before.items():  # what B saw is untouched or pruned by A itself
        if (ck / name).exists():
            assert (ck / name / "manifest.json").read_bytes() == manifest
    owners = {json.loads((p / "manifest.json").read_text())["run_id"][:16]
              for p in ckpt.checkpoints_in(ck)}
    assert owners == {result["run_id"]}
    newest = read_checkpoint(ck)
    assert str(newest.path) == result["checkpoint"]
    resumed = train(resume_config(ck), pool=ray_pool)
    assert resumed["decoded_jobs"] == 80 and resumed["rounds"] == result["rounds"]
    assert resumed["param_checksum"] == result["param_checksum"]

    # the same checkpoint, its weights set to NaN and every checksum recomputed: refused
    bad = tmp_path / "bad" / newest.path.name
    shutil.copytree(newest.path, bad)
    arrays = dict(np.load(bad / ckpt.ARRAYS_FILE))
    key = next(k for k in sorted(arrays) if "/params/" in k)
    arrays[key] = np.full_like(arrays[key], np.nan)
    ckpt.write_npz(bad / ckpt.ARRAYS_FILE, arrays)
    m = json.loads((bad / ckpt.MANIFEST_FILE).read_text())
    m.pop("manifest_sha256")
    m["files"][ckpt.ARRAYS_FILE] = {"bytes": (bad / ckpt.ARRAYS_FILE).stat().st_size,
                                    "sha256": ckpt.sha256_file(bad / ckpt.ARRAYS_FILE)}
    m["manifest_sha256"] = hashlib.sha256(ckpt.canonical_json(m)).hexdigest()
    (bad / ckpt.MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match=r"non-finite values \(model \d had diverged\)"):
        resume_config(bad)


def test_a_diverged_model_stops_the_run_at_once(ray_pool, tmp_path):
    """diabetes regression (MSE) at train.lr = 1e6 (the largest the settings allow): within a few
    updates the parameters (or the gradient at them) are non-finite. Instead of rejecting every worker until
    round_timeout_s, the run stops at the first non-finite job, naming the model, the job and
    the cause, and the last checkpoint, which holds finite parameters and verifies."""
    ck = tmp_path / "ck"
    cfg = config(scheme=GC_FR,
                 train={"dataset": "diabetes", "model": "logistic", "lr": 1e6, "check_decode": False},
                 checkpoint={"dir": str(ck), "every": 1})
    with pytest.raises(DivergedError) as info:
        train(cfg, pool=ray_pool)
    msg = str(info.value)
    assert msg.startswith("model ") and " diverged: " in msg and "job " in msg, msg
    assert "train.lr=1e+06" in msg and "\n" not in msg
    last = read_checkpoint(ck)  # verifies, and check_tree found every tensor finite
    assert f"the last good checkpoint is {last.path}" in msg


@pytest.mark.slow
def test_raylet_killed_mid_run(tmp_path):
    """SIGKILL of the local raylet under `gcode train`: one line naming what died and how to
    resume, exit status 1 within 30 s, no process of that Ray instance left, and the
    checkpoints written before verify."""
    (tmp_path / "run.toml").write_text(RUN_TOML.format(jobs=400, shift=0.05))
    ck = tmp_path / "ck"
    with gcode_process(["train", "--config", "run.toml", "--checkpoint-dir", ck, "--checkpoint-every", "2",
                 "--quiet"], tmp_path) as proc:
        wait_for(ck / "round-00000004", proc)
        raylets = [pid for pid in session_pids(proc.pid)
                   if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"/raylet")]
        assert len(raylets) == 1
        os.kill(raylets[0], signal.SIGKILL)
        start = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - start
        time.sleep(3)
        left = [p for p in session_pids(proc.pid) if Path(f"/proc/{p}").exists()]
    assert proc.returncode == 1 and took < 30, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"gcode: error: the local Ray node died under the run (its raylet, "
                           f"pid {raylets[0]}, killed by SIGKILL)"), last
    assert f"gcode train --resume {ck}" in last
    assert left == [], left
    assert read_checkpoint(ck).round >= 4
