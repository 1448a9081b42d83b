"""What a run leaves behind, and how it ends when told to (issue 29), with real processes and
real Ray on loopback:

| condition                                   | outcome                                          |
|---------------------------------------------|--------------------------------------------------|
| SIGTERM to `gcode train`                    | the round ends, a checkpoint is written, one     |
|                                             | line, exit 143; nothing of the run is left       |
| SIGKILL of `gcode train` (the OOM killer)   | within 30 s its reaper stops the run's processes |
|                                             | and removes its shared memory and Ray folder     |
| a run that died and whose reaper died too   | the next run removes its folders and stops what  |
|                                             | holds them, and says so                          |
| a 70-character TMPDIR                       | Ray's session folder goes under /tmp, one line   |
|                                             | says so; the run works                           |
| any finished run                            | no Ray session folder is left in TMPDIR          |
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from runtime_helpers import RUN_TOML, config, gcode_process, session_pids, wait_for

from gcode.runtime import train
from gcode.runtime.checkpoint import read_checkpoint, resume_config
from gcode.runtime.cluster.leftovers import OWNER_FILE, ray_temp_root
from gcode.runtime.cluster.procs import alive, start_time
from gcode.runtime.transport.shm_frames import shm_root

pytestmark = pytest.mark.ray

GC_FR = {"name": "gc", "s": 1, "gc_code": "fr"}


def _owned_by(pid: int, root: str) -> list[Path]:
    """The private folders (gcode-*, gcray*) under ``root`` that process ``pid`` made."""
    out = []
    for path in Path(root).iterdir():
        try:
            if json.loads((path / OWNER_FILE).read_text())["pid"] == pid:
                out.append(path)
        except (OSError, ValueError):
            continue
    return out


def _until(check, seconds: float) -> bool:
    """Poll ``check()`` until it is true or ``seconds`` pass (a hang guard, not a timing)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _rounds_logged(log: Path) -> int:
    try:
        return len(log.read_text().splitlines())
    except OSError:
        return 0


@pytest.mark.slow
def test_sigterm_ends_the_round_checkpoints_and_exits_143(ray_pool, tmp_path):
    # 120 jobs: at least (120 - 3) x 0.05 s of injected delay is still to run when SIGTERM goes,
    # and the resume below trains only what is left of 120 rounds (400 cost ~30 s more in CI)
    (tmp_path / "run.toml").write_text(RUN_TOML.format(jobs=120, shift=0.05))
    ck, log = tmp_path / "ck", tmp_path / "run.jsonl"
    args = ["train", "--config", "run.toml", "--workers", "2", "--checkpoint-dir", ck,
            "--checkpoint-every", "1000", "--log-jsonl", log, "--quiet"]
    with gcode_process(args, tmp_path) as proc:
        assert _until(lambda: _rounds_logged(log) >= 3 or proc.poll() is not None, 240)
        pids = {p: start_time(p) for p in session_pids(proc.pid)}
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        left = [p for p, s in pids.items() if alive(p, s)]
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err and "*** " not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    saved = read_checkpoint(ck)  # written at the stop, and verifies
    assert last.startswith("gcode: stopped by SIGTERM after ") and str(saved.path) in last, last
    assert f"gcode train --resume {ck}" in last, last
    assert saved.round == _rounds_logged(log) >= 3
    assert left == []
    resumed = train(resume_config(ck).replace(**{"checkpoint.dir": None, "log.jsonl": None,
                                                "cluster.workers": 2}), pool=ray_pool)
    assert resumed["decoded_jobs"] == 120 and resumed["sessions"] == 2


@pytest.mark.slow
def test_sigkill_leaves_nothing_within_30_s(tmp_path):
    """The coordinator SIGKILLed mid-run, as the OOM killer would: its reaper stops every
    process of the run (Ray's daemons and agents, the workers) and removes the run's shared
    memory and Ray session folder."""
    (tmp_path / "run.toml").write_text(RUN_TOML.format(jobs=400, shift=0.05))
    ck = tmp_path / "ck"
    args = ["train", "--config", "run.toml", "--workers", "2", "--checkpoint-dir", ck,
            "--checkpoint-every", "2", "--quiet"]
    with gcode_process(args, tmp_path) as proc:
        wait_for(ck / "round-00000002", proc)
        pids = {p: start_time(p) for p in session_pids(proc.pid) if p != proc.pid}
        folders = _owned_by(proc.pid, shm_root()) + _owned_by(proc.pid, proc.tmpdir)
        assert len(folders) == 2 and len(pids) >= 4, (folders, pids)  # shm, Ray; Ray's processes
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        gone = _until(lambda: not any(alive(p, s) for p, s in pids.items())
                      and not any(f.exists() for f in folders), 30)
        left = [p for p, s in pids.items() if alive(p, s)], [f for f in folders if f.exists()]
        _, err = proc.communicate(timeout=30)
    assert gone, left
    assert f"gcode: the run of pid {proc.pid} died without cleaning up; its reaper stopped" in err
    assert read_checkpoint(ck).round >= 2


def test_the_next_run_removes_what_a_dead_run_left(ray_pool, tmp_path, capfd):
    """A run that died with its reaper (both SIGKILLed) left a shared-memory folder with a
    process holding a file in it: the next run stops that process, removes the folder and
    names it."""
    made = subprocess.run(
        [sys.executable, "-c", ("from gcode.runtime.cluster.leftovers import private_folder; "
                               f"print(private_folder('gcode-', {shm_root()!r}))")],
        capture_output=True, text=True, check=True, timeout=120)
    folder = Path(made.stdout.strip())
    (folder / "region").write_bytes(b"\0" * (1 << 20))
    holder = subprocess.Popen(["sleep", "600"], cwd=folder, start_new_session=True)
    try:
        train(config(scheme={**GC_FR, "jobs": 4}, cluster={"workers": 2}), pool=ray_pool)
        err = capfd.readouterr().err
        assert f"gcode: removed what a run that died left behind: {folder} (1.0 MiB, 1 processes " \
               f"stopped) of pid " in err, err
        assert not folder.exists()
        assert holder.wait(timeout=30) == -signal.SIGKILL
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_long_tmpdir_and_no_session_folder_left(tmp_path):
    """TMPDIR of 70 characters (HPC job nodes): Ray's socket paths would pass 107 bytes, so its
    session folder goes under /tmp, said in one line; the run ends well, and leaves no Ray
    session folder, neither in TMPDIR nor in /tmp."""
    deep = tmp_path / ("job-" + "x" * 70)
    deep.mkdir()
    (tmp_path / "run.toml").write_text(RUN_TOML.format(jobs=6, shift=0.01))
    with gcode_process(["train", "--config", "run.toml", "--workers", "2", "--quiet", "--json"],
                       tmp_path, tmpdir=deep) as proc:
        out, err = proc.communicate(timeout=300)
        tmpdir = Path(proc.tmpdir)
        assert len(str(tmpdir)) >= 70
        assert proc.returncode == 0, err[-3000:]
        assert json.loads(out.strip().splitlines()[-1])["decoded_jobs"] == 6
        assert (f"gcode: the temp folder {tmpdir} is too long for Ray's socket paths; Ray's "
                f"session folder goes under /tmp") in err, err[-3000:]
        assert list(tmpdir.iterdir()) == []
        assert _owned_by(proc.pid, "/tmp") == []


def test_ray_temp_root_falls_back_to_a_short_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / ("y" * 80)))
    assert ray_temp_root() == "/tmp"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    if len(str(tmp_path)) <= 29:
        assert ray_temp_root() == str(tmp_path)
