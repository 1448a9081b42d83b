"""The hostile-input catalogue, part 3 (issue 29): other people's files and terminals. A shared
directory where someone planted links, a terminal that strings from outside would drive, a
monitor that callers without the token would fill, a disk that refuses writes. None starts Ray.

| case                                                 | outcome                                  |
|------------------------------------------------------|------------------------------------------|
| the checkpoint lock planted as a symbolic link       | refused before Ray, one line, exit 2;    |
| (to a file, dangling), a hard link, a FIFO, a folder | the victim untouched, nothing created    |
| a run log or JSONL log planted as a link to a file,  | refused, one line naming the path; the   |
| or a hard link                                       | victim untouched (/dev/null still works) |
| trace convert with OUT.tmp-<pid> and OUT planted as  | OUT a regular file with the trace; the   |
| links                                                | victim untouched; no temporary left      |
| escape sequences in a stop reason (gcode watch       | refused by the monitor, printed escaped; |
| --stop), a run log's run id and scheme (replay), a   | no control character reaches the         |
| file name echoed in an error                         | terminal                                 |
| 16 concurrent 60 MiB GetStatus calls, wrong token    | all refused; the monitor's peak RSS      |
|                                                      | grows < 100 MB (was 940 MB)              |
| a write refused by the disk (file size limit) under  | one line naming the file, exit 1, no     |
| gcode plot, trace convert                            | temporary file left                      |
"""

import os
import resource
import signal
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
from hostile_helpers import REPO, assert_one_line, cli, write

from gcode.paths import atomic_output, open_exclusive

VICTIM = b"someone else's file\n"


def _victim(tmp_path):
    return write(tmp_path / "victim", VICTIM)


# ---- planted files --------------------------------------------------------------------------
@pytest.mark.parametrize("plant,what", [
    (lambda lock, victim: os.symlink(victim, lock), "is a symbolic link"),
    (lambda lock, victim: os.symlink(victim.with_name("absent"), lock), "is a symbolic link"),
    (lambda lock, victim: os.link(victim, lock), "is a hard link (2 names for one file)"),
    (lambda lock, victim: os.mkfifo(lock), "is not a regular file"),
    (lambda lock, victim: os.mkdir(lock), "is a folder"),
], ids=["link to a file", "dangling link", "hard link", "FIFO", "folder"])
def test_a_planted_checkpoint_lock_is_refused(tmp_path, plant, what):
    victim = _victim(tmp_path)
    ck = tmp_path / "ck"
    ck.mkdir()
    plant(ck / ".gcode-lock", victim)
    code, _, last, full, _ = cli("train", "--checkpoint-dir", ck, "--jobs", 2, "--quiet")
    assert_one_line(code, last, full, f"checkpoint.dir: {ck / '.gcode-lock'} {what}",
                    "gcode never writes through it")
    assert victim.read_bytes() == VICTIM
    assert not victim.with_name("absent").exists()
    assert sorted(p.name for p in ck.iterdir()) == [".gcode-lock"]


@pytest.mark.parametrize("command,name", [("simulate", "run.pb"), ("simulate", "run.jsonl"),
                                          ("train", "r.jsonl")])
@pytest.mark.parametrize("plant,needle", [
    (os.symlink, "is a symbolic link to"),
    (lambda victim, path: os.symlink(victim.with_name("absent"), path), "is a symbolic link to"),
    (os.link, "has 2 names (hard links)"),
], ids=["symbolic link", "dangling link", "hard link"])
def test_a_planted_log_path_is_refused(tmp_path, command, name, plant, needle):
    """`gcode simulate --log run` writes run.pb and run.jsonl; `gcode train --log-jsonl` its
    JSONL log: each refused up front (train: before Ray), the victim untouched."""
    victim = _victim(tmp_path)
    plant(victim, tmp_path / name)
    args = (["simulate", "--scheme", "gc", "--s", 1, "--log", tmp_path / "run"] if command == "simulate"
            else ["train", "--log-jsonl", tmp_path / name, "--jobs", 2, "--quiet"])
    code, _, last, full, _ = cli(*args)
    assert_one_line(code, last, full, f"{tmp_path / name} {needle}")
    assert victim.read_bytes() == VICTIM and not victim.with_name("absent").exists()


def test_a_log_to_a_device_through_a_link_still_works(tmp_path):
    os.symlink("/dev/null", tmp_path / "r.jsonl")
    with open_exclusive(tmp_path / "r.jsonl") as f:
        f.write("{}\n")
    assert os.path.islink(tmp_path / "r.jsonl")


def test_trace_convert_never_writes_through_planted_names(tmp_path):
    victim = _victim(tmp_path)
    out = tmp_path / "out.npy"
    os.symlink(victim, f"{out}.tmp-{os.getpid()}")  # the temporary name it used to use
    os.symlink(victim, out)
    trace = write(tmp_path / "t.csv", "1,2\n3,4\n")
    code, _, _, full, _ = cli("trace", "convert", trace, out)
    assert code == 0, full
    assert victim.read_bytes() == VICTIM
    assert not out.is_symlink() and np.array_equal(np.load(out), [[1.0, 2.0], [3.0, 4.0]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["victim", "out.npy", f"out.npy.tmp-{os.getpid()}", "t.csv"])


def test_a_failed_atomic_write_leaves_the_target_and_no_temporary(tmp_path):
    target = write(tmp_path / "result.json", "old")
    with pytest.raises(RuntimeError), atomic_output(target, "w") as f:
        f.write("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["result.json"]


# ---- disks that refuse writes -----------------------------------------------------------------
def _limited(argv, limit_bytes):
    """`gcode ARGV` in a process whose files may not grow past ``limit_bytes`` (RLIMIT_FSIZE:
    a write beyond it fails with EFBIG, as a full disk fails with ENOSPC)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    proc = subprocess.run([sys.executable, "-B", "-m", "gcode", *map(str, argv)], capture_output=True,
                          text=True, timeout=120, preexec_fn=limit, cwd=REPO, check=False)
    lines = proc.stderr.strip().splitlines()
    return proc.returncode, lines[-1] if lines else "", proc.stderr


def test_write_errors_name_the_path(tmp_path):
    log = tmp_path / "run"
    code, _, _, full, _ = cli("simulate", "--scheme", "gc", "--s", 1, "--n", 4, "--jobs", 8,
                              "--log", log)
    assert code == 0, full
    plots = tmp_path / "plots"
    plots.mkdir()
    code, last, full = _limited(["plot", f"{log}.pb", "--out", plots], 2048)
    assert code == 1 and "Traceback" not in full, full
    assert last.startswith(f"gcode: error: {plots}/run_") and last.endswith(".png: File too large")
    assert os.listdir(plots) == []  # no temporary file left
    big = write(tmp_path / "t.csv", "\n".join(",".join(["1.5"] * 50) for _ in range(100)) + "\n")
    code, last, full = _limited(["trace", "convert", big, tmp_path / "t.npy"], 2048)
    assert code == 2 and last == f"gcode: error: {tmp_path / 't.npy'}: cannot write the trace: File too large"
    assert sorted(os.listdir(tmp_path)) == ["plots", "run.jsonl", "run.pb", "t.csv"]


# ---- the terminal -----------------------------------------------------------------------------
EVIL = "\x1b]2;PWNED\x07\x1b[2J"


def test_a_stop_reason_with_escape_sequences_is_refused_and_printed_escaped():
    from gcode.telemetry.monitor import MonitorServer
    with MonitorServer("127.0.0.1:0") as server:  # loopback: no token needed
        code, out, last, full, _ = cli("watch", server.target, "--stop", EVIL)
        assert not server.stop_requested.is_set()
        code2, out2, _, full2, _ = cli("watch", server.target, "--stop", "maintenance")
        assert server.stop_requested.is_set() and server.stop_reason == "maintenance"
    assert "\x1b" not in full + out and "\x07" not in full + out
    assert_one_line(code, last, full, "INVALID_ARGUMENT", "reason holds a control character at "
                                      "position 0 (\\x1b); send printable text")
    assert code2 == 0 and out2 == "stop accepted: stopping after the current round's decode\n", full2


def test_replay_of_a_crafted_run_log_prints_escaped(tmp_path):
    from gcode.telemetry.messages import run_config
    from gcode.telemetry.runlog import RunLogWriter
    cfg = run_config(source="sim", scheme=f"gc{EVIL}", n=2)
    cfg.run_id = f"r{EVIL}"
    with RunLogWriter(tmp_path / "evil", cfg):
        pass
    code, out, _, full, _ = cli("replay", tmp_path / "evil.pb", "--allow-truncated")
    assert code == 0, full
    assert "\x1b" not in out and "\x07" not in out
    assert "run r\\x1b]2;PWNED\\x07\\x1b[2J: scheme gc\\x1b]2;PWNED\\x07\\x1b[2J" in out


def test_names_echoed_in_errors_are_escaped(tmp_path):
    code, _, last, full, _ = cli("trace", "convert", tmp_path / f"a{EVIL}.csv", tmp_path / "b.npy")
    assert "\x1b" not in full
    assert_one_line(code, last, full, f"no such file: {tmp_path}/a\\x1b]2;PWNED\\x07\\x1b[2J.csv")


# ---- the monitor before authentication -------------------------------------------------------------
SERVER = """
import sys
from gcode.telemetry.monitor import MonitorServer
server = MonitorServer("127.0.0.1:0", token="T")
print(server.port, flush=True)
sys.stdin.read()
"""


def _kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def test_unauthenticated_callers_cannot_fill_the_monitors_memory():
    """16 concurrent GetStatus calls of 60 MiB each with a wrong token: all refused, and the
    monitor's process (a real gRPC server on 127.0.0.1, in its own process) peaks less than
    100 MB above where it started; an authorized call is answered afterwards."""
    from gcode.telemetry.monitor import MonitorClient
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        port = int(proc.stdout.readline())
        before = _kib(proc.pid, "VmRSS:")
        body = bytes(60 << 20)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}",
                                        options=[("grpc.max_send_message_length", 64 << 20)])
        call = channel.unary_unary("/gcode.v1.Monitor/GetStatus")
        codes = []

        def attack():
            try:
                call(body, metadata=[("authorization", "Bearer wrong")], timeout=60)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
        threads = [threading.Thread(target=attack) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        channel.close()
        peak = _kib(proc.pid, "VmHWM:")
        with MonitorClient(f"127.0.0.1:{port}", token="T") as client:
            assert client.status(timeout=10).round == -1
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert len(codes) == 16 and set(codes) <= {"RESOURCE_EXHAUSTED", "UNAUTHENTICATED"}, codes
    assert (peak - before) / 1024 < 100, (before, peak)
