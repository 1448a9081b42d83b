"""Fault injection: every fault ends with the fault-free run's parameters, or with a clear error and
nothing lost (a verified checkpoint to resume from, which then gives those parameters).

Exactness is checked bit for bit (``param_checksum`` equal) wherever the scheme is fixed: with FR
codes a job's decoded gradient is the same fp64 sum of the same fp32 vectors whichever workers
were used, so a run that lost workers, fell back, restarted actors or resumed from a checkpoint
must land on exactly the fault-free parameters. Runs whose scheme changes (auto) are compared with
uncoded at 1e-5 relative (other chunkings round differently) and every decoded gradient with a
direct one (check_decode).

| fault                                         | outcome                                   |
|-----------------------------------------------|-------------------------------------------|
| worker returns NaN / wrong shape / wrong tag  | straggler that round; exact               |
| worker actor killed while its task runs       | failure -> retry after restart; exact     |
| 10 rounds in a row violating the model        | fallback every round; exact; completes    |
| auto scheme: faults in every round, switches  | exact (uncoded params, per-job check)     |
| checkpoint dir read-only / disk full          | CheckpointError naming the path; previous |
|                                               | checkpoint verified; resume -> exact      |
| coordinator SIGKILLed                         | --resume -> exact                         |
| worker node killed, actors can restart        | completes; exact                          |
| worker node killed, actors cannot restart     | RunFailed naming the workers and the      |
|                                               | checkpoint; resume -> exact               |
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import BASE, BURSTY, RUN_TOML, config, own_session, rel

from gcode.config import ConfigError, from_dict
from gcode.runtime import train
from gcode.runtime.checkpoint import CheckpointError, read_checkpoint, resume_config
from gcode.runtime.checkpoint.lock import LOCK_FILE
from gcode.runtime.loop.jsonl_log import read_jsonl

pytestmark = pytest.mark.ray

HERE = Path(__file__).resolve().parent
GC_FR = {"name": "gc", "s": 1, "gc_code": "fr"}
MSGC_FR = {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}


@pytest.fixture(scope="module")
def clean(ray_pool):
    """Fault-free references, computed once: gc FR, msgc FR, uncoded (12 jobs, 2 models)."""
    return {name: train(config(scheme=scheme), pool=ray_pool) for name, scheme in
            (("gc", GC_FR), ("msgc", MSGC_FR), ("uncoded", {"name": "uncoded"}))}


def _trace(tmp_path, rows, slow=(), seconds=0.3, base=0.01):
    """A trace CSV: ``base`` seconds everywhere, ``seconds`` at each (round, worker) in slow."""
    t = np.full((rows, 4), base)
    for r, w in slow:
        t[r, w] = seconds
    path = tmp_path / "trace.csv"
    path.write_text("\n".join(",".join(f"{v}" for v in row) for row in t))
    return str(path)


# ---- bad results ------------------------------------------------------------------------------
def test_nan_wrong_shape_and_wrong_round_tag_are_stragglers_and_decoding_stays_exact(
        ray_pool, clean, tmp_path):
    faults = [{"round": 2, "worker": 1, "kind": "nan"}, {"round": 4, "worker": 2, "kind": "shape"},
              {"round": 6, "worker": 3, "kind": "tag"}]
    log = tmp_path / "r.jsonl"
    res = train(config(scheme=GC_FR, faults=faults, log={"jsonl": str(log)}), pool=ray_pool)
    records = {r["round"]: r for r in read_jsonl(log)}
    for f, reason in zip(faults, ("non-finite", "wrong shape", "tagged round 5 worker 3")):
        got = [x for x in res["failures"] if (x["round"], x["worker"]) == (f["round"], f["worker"])]
        assert got and reason in got[0]["reason"], (f, res["failures"])
        rec = records[f["round"]]
        assert f["worker"] in rec["stragglers"] or rec["fell_back"]   # its result was never used
    assert res["decoded_jobs"] == 12 and res["max_decode_rel_error"] < 1e-5
    assert res["param_checksum"] == clean["gc"]["param_checksum"]


# ---- a worker actor killed mid-round -------------------------------------------------------------
def test_killing_a_worker_actor_while_its_task_runs(ray_pool, clean, tmp_path):
    """Round 3: workers 1 and 2 sleep 1.5 s, two stragglers where gc s=1 takes one, so the round
    falls back and waits for them; 0.5 s into it worker 1's actor is killed (ray.kill) while its
    task sleeps. Its failure is recorded, its tasks are re-sent once Ray restarted it, and the run
    ends with the fault-free parameters."""
    import ray
    victim = ray_pool.actors[1]
    pid_before = ray.get(victim.ready.remote(), timeout=60)["pid"]
    timers = []

    def progress(rec):
        if rec["round"] == 2:  # round 3 is dispatched right after this returns
            timers.append(threading.Timer(0.5, ray.kill, args=(victim,), kwargs={"no_restart": False}))
            timers[-1].start()
    log = tmp_path / "k.jsonl"
    res = train(config(scheme=GC_FR, inject={"trace": _trace(tmp_path, 12, [(3, 1), (3, 2)], 1.5)},
                       log={"jsonl": str(log)}), pool=ray_pool, progress=progress)
    for t in timers:
        t.join()
    died = [f for f in res["failures"] if f["worker"] == 1 and "died" in f["reason"]]
    assert died and died[0]["round"] == 3, res["failures"]
    assert read_jsonl(log)[3]["fell_back"]
    assert res["restarts"].get("1", 0) >= 1 or ray.get(victim.ready.remote(), timeout=60)["pid"] != pid_before
    assert res["decoded_jobs"] == 12 and res["max_decode_rel_error"] < 1e-5
    assert res["param_checksum"] == clean["gc"]["param_checksum"]


# ---- stragglers breaking the model round after round ------------------------------------------------
@pytest.mark.parametrize("scheme, policy", [("gc", "paper"), ("msgc", "partial"), ("msgc", "gap")])
def test_ten_rounds_in_a_row_violating_the_model_fall_back_every_round(
        ray_pool, clean, tmp_path, scheme, policy):
    """Rounds 2-11: workers 0 and 1 are both slow, two distinct stragglers per round where the
    model allows one (gc s=1; msgc lam=1)."""
    slow = [(r, w) for r in range(2, 12) for w in (0, 1)]
    log = tmp_path / "v.jsonl"
    res = train(config(scheme=GC_FR if scheme == "gc" else MSGC_FR, policy={"name": policy},
                       inject={"trace": _trace(tmp_path, 14, slow)}, log={"jsonl": str(log)}),
                pool=ray_pool)
    records = read_jsonl(log)
    assert all(records[r]["fell_back"] for r in range(2, 12)), [r["fell_back"] for r in records]
    assert res["waits"] >= 10 and res["rounds"] == len(records)
    assert res["decoded_jobs"] == 12 and res["max_decode_rel_error"] < 1e-5
    assert res["param_checksum"] == clean[scheme]["param_checksum"]


# ---- the live auto scheme under faults --------------------------------------------------------------
KINDS = ("nan", "shape", "tag", "raise")
EVERY_ROUND = [{"round": r, "worker": r % 4, "kind": KINDS[r % 4]} for r in range(1, 14)]


def _assert_exact_under_faults(res, clean, log):
    assert res["decoded_jobs"] == 12 and res["updates_per_model"] == [6, 6]
    assert res["max_decode_rel_error"] < 1e-5
    for got, want in zip(res["param_checksum"], clean["uncoded"]["param_checksum"]):
        assert rel(got, want) <= 1e-5
    # every fault was caught (a failure), or hit a worker already cut as a straggler (its late
    # call was dropped as stale when the next round reached it); either way nothing was used
    records = read_jsonl(log)
    failed = {(f["round"], f["worker"]) for f in res["failures"]}
    caught = 0
    for f in EVERY_ROUND:
        if f["round"] < len(records) and records[f["round"]]["arrival_s"]:  # not a skipped
            key = (f["round"], f["worker"])                                 # tail round
            assert key in failed or f["worker"] in records[f["round"]]["stragglers"], key
            caught += key in failed
    # the faults must have been exercised; how many hit a worker the round had already cut is
    # timing (5 of 12 were caught once on a loaded CI box), so ask for a quarter
    assert caught >= len(records) // 4


def test_auto_scheme_under_faults_in_every_round_stays_exact(ray_pool, clean, tmp_path):
    log = tmp_path / "a.jsonl"
    res = train(config(scheme={"name": "auto"}, inject=BURSTY, faults=EVERY_ROUND,
                       log={"jsonl": str(log)}), pool=ray_pool)
    _assert_exact_under_faults(res, clean, log)


def test_forced_switches_under_faults_never_mis_decode(ray_pool, clean, monkeypatch, tmp_path):
    """The tuner is made to switch at every boundary it may (cycling msgc, uncoded, srsgc, gc s=3,
    gc s=1), while a worker fails in every round: each switch happens in a faulty round, with a
    draining segment, and every job still decodes exactly."""
    from gcode.codes import make_scheme
    from gcode.sim.online import Candidate, OnlineTuner
    cycle = [("msgc", {"B": 1, "W": 2, "lam": 1}), ("uncoded", {}),
             ("srsgc", {"B": 1, "W": 2, "lam": 1}), ("gc", {"s": 3}), ("gc", {"s": 1})]

    def forced(self, next_round):
        if not self.scheme.can_switch(next_round):
            return
        name, params = cycle[len(self.scheme.switches) % len(cycle)]
        params = {**params, "gc_code": "fr"} if params else {}
        self.scheme.switch(next_round, lambda jobs: make_scheme(name, n=self.n, jobs=jobs, **params))
        self.current = Candidate(name, params, self.current.mu, self.current.policy)  # same cut
    monkeypatch.setattr(OnlineTuner, "_decide", forced)
    log = tmp_path / "f.jsonl"
    res = train(config(scheme={"name": "auto"}, inject=BURSTY, faults=EVERY_ROUND,
                       log={"jsonl": str(log)}), pool=ray_pool)
    assert len(res["switches"]) >= 3, res["switches"]
    assert {s["scheme"] for s in res["switches"]} >= {"msgc", "uncoded", "srsgc"}
    _assert_exact_under_faults(res, clean, log)


# ---- the checkpoint directory fails: read-only, disk full ---------------------------------------
@pytest.fixture
def small_fs(tmp_path):
    """A real 512 KiB tmpfs (root), else a plain directory (read-only by chmod; no disk-full)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = False
    if os.geteuid() == 0:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", str(mnt)],
                              capture_output=True, text=True, timeout=30, check=False)
        mounted = proc.returncode == 0
    try:
        yield mnt, mounted
    finally:
        if mounted:
            if subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30, check=False).returncode:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30, check=False)
        else:
            os.chmod(mnt, 0o755)


def _make_read_only(mnt, mounted):
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, timeout=30)
    else:
        os.chmod(mnt / "ck", 0o500)


def _fill(mnt):
    with contextlib.suppress(OSError), open(mnt / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())


def _checkpointed(cfg, root, every=2):
    return cfg.replace(**{"checkpoint.dir": str(root), "checkpoint.every": every})


@pytest.mark.parametrize("failure", ["read-only", "disk-full"])
def test_checkpoint_dir_failing_mid_run(ray_pool, clean, small_fs, failure):
    mnt, mounted = small_fs
    if failure == "disk-full" and not mounted:
        pytest.skip("disk-full needs a tmpfs (root)")
    if failure == "read-only" and not mounted and os.geteuid() == 0:
        pytest.skip("root ignores chmod and no tmpfs could be mounted")
    root = mnt / "ck"
    cfg = _checkpointed(config(scheme=GC_FR, inject=BURSTY), root)

    def progress(rec):  # round-00000002 is written at the start of round 2
        if rec["round"] == 2:
            _make_read_only(mnt, mounted) if failure == "read-only" else _fill(mnt)
    with pytest.raises(CheckpointError) as info:
        train(cfg, pool=ray_pool, progress=progress)
    msg = str(info.value)
    assert msg.startswith("checkpoint.dir: cannot write the round-4 checkpoint to " + str(root))
    errno_text = "Read-only file system" if mounted else "Permission denied"
    assert (errno_text if failure == "read-only" else "No space left on device") in msg
    assert f"the previous checkpoint {root / 'round-00000002'} is intact" in msg
    # no partial write left (only the run's lock file beside the checkpoint)
    assert sorted(p.name for p in root.iterdir() if p.name != LOCK_FILE) == ["round-00000002"]
    assert read_checkpoint(root).round == 2                               # verifies
    if failure == "read-only":  # resuming into it is refused before anything starts
        with pytest.raises(ConfigError, match=r"^checkpoint\.dir: .* is not writable"):
            train(resume_config(root), pool=ray_pool)
        res = train(resume_config(root).replace(**{"checkpoint.dir": None}), pool=ray_pool)
    else:                       # space freed: resume in place, checkpointing again
        (mnt / "filler").unlink()
        res = train(resume_config(root), pool=ray_pool)
        assert res["checkpoints"] and read_checkpoint(root).path == Path(res["checkpoints"][-1])
    assert res["decoded_jobs"] == 12 and res["rounds"] == clean["gc"]["rounds"]
    assert res["param_checksum"] == clean["gc"]["param_checksum"]


# ---- processes and nodes die: the coordinator (SIGKILL), a whole worker node ------------------------
@pytest.mark.slow
def test_sigkill_of_the_coordinator_then_resume(ray_pool, tmp_path):
    """`gcode train --checkpoint-dir` in its own process with its own local Ray, SIGKILLed once
    round 6's checkpoint exists (mid-round, possibly mid-write); `gcode train --resume` in a new
    process finishes the run with the uninterrupted run's parameters."""
    toml = tmp_path / "run.toml"
    toml.write_text(RUN_TOML.format(jobs=16, shift=0.1))
    ck = tmp_path / "ck"
    ray_tmp = tempfile.mkdtemp(prefix="gck")  # short: Ray's socket paths have a length limit
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               TMPDIR=ray_tmp)
    gcode = [sys.executable, "-m", "gcode", "train"]
    try:
        with own_session(gcode + ["--config", str(toml), "--checkpoint-dir", str(ck),
                                   "--checkpoint-every", "2", "--json", "--quiet"], env) as proc:
            deadline = time.monotonic() + 240
            while not (ck / "round-00000006").exists():
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "no checkpoint within 240 s"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        killed_at = read_checkpoint(ck).round
        assert 6 <= killed_at < 16
        with own_session(gcode + ["--resume", str(ck), "--json", "--quiet"], env) as proc:
            out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        res = json.loads(out.strip().splitlines()[-1])
    finally:
        import shutil
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert res["resumed_from"] == str(ck / f"round-{killed_at:08d}") and res["sessions"] == 2
    assert res["decoded_jobs"] == 16 and res["rounds"] == 16
    from gcode.config import load_config
    want = train(load_config(toml).replace(**{"inject.model": None, "inject.params": {}}),
                 pool=ray_pool)
    assert res["param_checksum"] == want["param_checksum"]


NODE_CONFIG = {**BASE, "scheme": {**GC_FR, "jobs": 12},
               "train": {**BASE["train"], "models": 1},
               "inject": {"model": "shifted_exp", "params": {"shift": 0.02, "rate": 100.0}}}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["restart", "lost"])
def test_killing_a_worker_node(ray_pool, tmp_path, mode):
    """A 3-node loopback Cluster (head without CPUs + 2 worker nodes) in a subprocess; the node
    holding workers 1 and 3 is killed (SIGKILL, no drain) after round 3 (node_fault_job.py).

    restart: Ray restarts the two actors on the surviving node; the rounds meanwhile fall back
    and re-send their tasks; the run completes with the fault-free parameters.
    lost (max_restarts=0): the actors cannot come back, the round exceeds round_timeout_s and the
    run fails with a RunFailed error naming the missing workers and the last checkpoint; resuming
    from that checkpoint (here on the session's pool) gives the fault-free parameters."""
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(NODE_CONFIG))
    ck = tmp_path / "ck"
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    with own_session([sys.executable, str(HERE / "node_fault_job.py"), str(cfg_path), str(ck), mode],
                      env, cwd=HERE.parents[1]) as proc:
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert res["victim_workers"] == [1, 3] and res["killed_at_round"] == 3
    want = train(from_dict(NODE_CONFIG), pool=ray_pool)
    if mode == "restart":
        assert res["ok"], res.get("traceback")
        assert res["restarts"] == {"1": 1, "3": 1} and res["waits"] >= 1
        assert {f["worker"] for f in res["failures"]} == {1, 3}
        assert res["decoded_jobs"] == 12 and res["max_decode_rel_error"] < 1e-5
        assert res["param_checksum"] == want["param_checksum"]
        return
    assert not res["ok"] and res["error_type"] == "RunFailed"
    assert "round_timeout_s" in res["error"] and "waiting for workers [1, 3]" in res["error"]
    last = read_checkpoint(ck)
    assert f"last checkpoint is {last.path}" in res["error"]
    resumed = train(resume_config(ck).replace(**{"cluster.address": None, "cluster.max_restarts": 3,
                                                 "cluster.round_timeout_s": 60.0}), pool=ray_pool)
    assert resumed["decoded_jobs"] == 12 and resumed["param_checksum"] == want["param_checksum"]
