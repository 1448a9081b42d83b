"""Live telemetry: a real `gcode train` streams RoundRecords over gRPC (127.0.0.1) that equal its
protobuf run log; `gcode train --monitor ... --run-log ...` runs with both."""

import json
import threading

import pytest
from runtime_helpers import config

from gcode.runtime import train
from gcode.telemetry.monitor import MonitorClient, MonitorServer
from gcode.telemetry.runlog import read_run_log

pytestmark = pytest.mark.ray


def test_streamed_records_equal_the_run_log(ray_pool, tmp_path):
    prefix = str(tmp_path / "live")
    server = MonitorServer("127.0.0.1:0")
    client = MonitorClient(server.target)
    streamed = []
    watcher = threading.Thread(target=lambda: streamed.extend(client.follow(0, retries=20)), daemon=True)
    watcher.start()
    try:
        res = train(config(scheme={"name": "msgc", "B": 1, "W": 2, "lam": 2, "jobs": 8},
                           inject={"model": "bursty", "params": {"B": 1, "W": 2, "lam": 2, "base": 0.02}},
                           log={"run_log": prefix}),
                    pool=ray_pool, monitor=server)
        watcher.join(timeout=60)
    finally:
        client.close()
        server.close()
    log = read_run_log(prefix)
    assert not watcher.is_alive()
    assert len(streamed) == res["rounds"] == len(log.rounds)
    assert [r.SerializeToString(deterministic=True) for r in streamed] == \
        [r.SerializeToString(deterministic=True) for r in log.rounds]
    assert log.summary is not None and log.summary.decoded_jobs == 8


def test_gcode_train_with_monitor_and_run_log_flags(ray_pool, tmp_path, capsys):
    import socket

    from gcode.cli import build_parser
    from gcode.cli.train import run_from_args
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = build_parser().parse_args(["train", "--scheme", "gc", "--s", "1", "--jobs", "6", "--workers", "4",
                                      "--monitor", f"127.0.0.1:{port}", "--run-log", str(tmp_path / "cli"),
                                      "--json", "--quiet"])
    assert run_from_args(args, pool=ray_pool) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["decoded_jobs"] == 6
    assert len(read_run_log(str(tmp_path / "cli")).rounds) == result["rounds"]
