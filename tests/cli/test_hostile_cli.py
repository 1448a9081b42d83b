"""The hostile-input catalogue, part 2 (issue 13): monitor port squatters, lockouts and silent
listeners (real sockets on loopback), numbers that commands accepted inconsistently, output
paths and full disks, and messages that did not name their file or field.

Every case ends in one line that names the file or field, with no traceback, within a stated
time bound. None starts Ray; part 1 is tests/cli/test_hostile_files.py.
"""

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from hostile_helpers import REPO, assert_one_line, cli, write

from gcode.config import ConfigError, from_dict, load_config


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
    assert "serving on" not in full and seconds < 60


def test_the_client_sends_its_token_only_where_the_server_is():
    """The server holds 127.0.0.1:P (named explicitly); a squatter holds [::1]:P and records
    what it receives. `gcode watch localhost:P` resolves localhost as the server does and dials
    127.0.0.1: it gets the run, and the squatter gets no connection at all."""
    from gcode.cli import runs as tcli
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
            assert control.status(timeout=5).round == -1
            assert control.request_stop("operator", timeout=5).accepted
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
    from gcode.cli import runs as tcli
    silent = _squat(socket.AF_INET, "127.0.0.1")
    err = io.StringIO()
    start = time.monotonic()
    try:
        code = tcli.watch(f"127.0.0.1:{silent.getsockname()[1]}", out=io.StringIO(), err=err,
                          give_up_after_s=3.0)
    finally:
        silent.close()
    assert code == 1 and time.monotonic() - start < 3.0 + 2 + 30  # a bound, not a speed
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
    (["verify", "--scheme", "gc", "--s", "1", "--n", "1000000"], "--n must be <= 100000, got 1000000"),
    (["verify", "--scheme", "gc", "--s", "1", "--n", "64", "--rounds", "1000000000"],
     "worker-rounds, more than the 1e+07"),
    (["train", "--jobs", "1000000000"], "scheme.jobs: must be <= 10000000, got 1000000000"),
    (["train", "--workers", "1000000"], "cluster.workers: must be <= 100000, got 1000000"),
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
    path = write(tmp_path / "c.toml", "[scheme]\njobs = 1000000000000000000\n")
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
        assert seconds < 60, argv


def test_two_writers_never_share_a_log(tmp_path):
    """A second run given the same --run-log or --log-jsonl path is refused; the first run's
    log is neither truncated nor interleaved."""
    from gcode.runtime.loop.jsonl_log import JsonlWriter
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
    from gcode.runtime.errors import RunFailed
    from gcode.runtime.loop.jsonl_log import JsonlWriter
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
        load_config(write(tmp_path / name, text))


def test_inject_params_are_not_coerced():
    from gcode.cli.train import parse_value
    assert [parse_value(v) for v in ("1_0", "nan", "inf", "3", "0.5", "1e-3", "true")] == \
        ["1_0", "nan", "inf", 3, 0.5, 0.001, True]


def test_nothing_listening_at_address_is_a_bounded_one_line_error():
    # a process of its own: this test process may already be connected to the tests' Ray
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gcode", "train", "--address", "127.0.0.1:1"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    seconds = time.monotonic() - start
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert_one_line(proc.returncode, lines[-1] if lines else "", proc.stderr,
                    "address: nothing answers at 127.0.0.1:1",
                    "waited at most 5 s")  # cluster.address, as gcode.fit names it: scaling.address
    assert seconds < 60  # a bound, not a speed: the hang it replaces lasted 9 minutes


@pytest.mark.parametrize("address", ["foo", "127.0.0.1:99999", "ray://host", "h:p"])
def test_malformed_addresses_name_the_field(address):
    with pytest.raises(ConfigError, match=r"^cluster\.address: expected HOST:PORT"):
        from_dict({"cluster": {"address": address}})


def test_cli_end_to_end_prints_one_line_without_traceback(tmp_path):
    """One real `gcode` process per failure class, as a user would see it."""
    path = write(tmp_path / "c.toml", "[train]\nlr = 0.1\n".encode("utf-16"))
    for argv, needle in [(["train", "--config", str(path)], "looks like UTF-16"),
                         (["simulate", "--load-slope", "nan"], "argument --load-slope")]:
        proc = subprocess.run([sys.executable, "-m", "gcode", *argv], capture_output=True,
                              text=True, timeout=120, check=False, cwd=REPO)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert needle in lines[-1]
