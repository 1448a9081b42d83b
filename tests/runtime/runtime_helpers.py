"""Small shared builders for the live runtime tests."""

import contextlib
import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gcode.config import from_dict

BASE = {
    "train": {"model": "logistic", "optimizer": "sgd", "lr": 0.5, "batch_size": 240,
              "models": 2, "check_decode": True, "seed": 3},
    "scheme": {"name": "msgc", "jobs": 12},  # the default before one model became the default
    "cluster": {"workers": 4, "round_timeout_s": 60},
}

#: bursty stragglers that (B, W, lam) = (1, 2, 1) tolerates most rounds, 20 ms vs 100 ms
BURSTY = {"model": "bursty", "params": {"B": 1, "W": 2, "lam": 1, "base": 0.02,
                                         "slowdown": 5.0, "straggle_prob": 0.5}}


def config(**sections):
    data = copy.deepcopy(BASE)
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(data.get(name), dict):
            data[name].update(values)
        else:
            data[name] = values
    return from_dict(data)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


#: a small `gcode train` TOML for process-level tests (format with jobs and the injected shift)
RUN_TOML = """
[scheme]
name = "gc"
s = 1
gc_code = "fr"
jobs = {jobs}
[train]
model = "logistic"
optimizer = "sgd"
lr = 0.5
batch_size = 240
models = 2
seed = 3
[cluster]
workers = 4
round_timeout_s = 60
[inject]
model = "shifted_exp"
params = {{ shift = {shift}, rate = 50.0 }}
"""


def session_pids(sid):
    """Processes of session ``sid`` (one this test started with start_new_session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:  # state ppid pgrp session ...
            pids.append(int(entry))
    return pids


def kill_session(sid):
    """SIGKILL what is left of a session a test started (Ray agents that outlive the driver)."""
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def own_session(args, env, **kwargs):
    """``args`` in a session of its own (stdout and stderr piped, text); whatever is left of the
    session is killed afterwards (by session id: nothing else is touched)."""
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=30)
        kill_session(proc.pid)


@contextlib.contextmanager
def gcode_process(args, tmp_path, tmpdir=None):
    """`gcode ARGS` in its own session (:func:`own_session`) with its own local Ray, TMPDIR a
    new folder (in ``tmpdir``), removed afterwards."""
    ray_tmp = tempfile.mkdtemp(prefix="gch", dir=tmpdir)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               TMPDIR=ray_tmp)
    try:
        with own_session([sys.executable, "-m", "gcode", *map(str, args)], env,
                         cwd=tmp_path) as proc:
            proc.tmpdir = ray_tmp
            yield proc
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def wait_for(path, proc, seconds=240):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(0.05)
