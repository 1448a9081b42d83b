"""The Monitor gRPC service over real gRPC on 127.0.0.1: streaming, replay, stop, auth, limits,
slow clients and reconnects. Every wait is bounded."""

import io
import json
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from paths import TRACES

from gcode.cli import build_parser
from gcode.cli import runs as tcli
from gcode.codes import make_scheme
from gcode.sim import make_policy
from gcode.stragglers import load_trace
from gcode.telemetry.messages import round_record, run_summary
from gcode.telemetry.monitor import MonitorClient, MonitorServer, is_loopback, split_address
from gcode.telemetry.runlog import read_run_log
from gcode.telemetry.sim_logging import simulate_with_log

BUNDLED = Path(__file__).resolve().parents[2] / "gcode" / "data" / "lambda-cnn-w256-r30-canada.csv"
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def trace():
    path = TRACES / "lambda-cnn-w256-r30-canada.csv"
    return load_trace(path if path.is_file() else BUNDLED)


@pytest.fixture
def server():
    srv = MonitorServer()
    yield srv
    srv.close(grace=0)


def _records(count, n=4, start=0):
    plans = [[] for _ in range(n)]
    return [round_record(round=r, plans=plans, arrival_s=np.arange(n) + r,
                         stragglers=np.arange(n) == r % n, duration_s=1.0 + r,
                         decoded_jobs=[r], wall_time_s=float(r), losses={0: 1.0 / (r + 1)})
            for r in range(start, start + count)]


def _collect(client, from_round=0, into=None):
    into = [] if into is None else into
    for rec in client.watch(from_round):
        into.append(rec)
    return into


def _join(thread):
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "watcher did not finish in time"


def test_streamed_records_equal_the_run_log(tmp_path, trace, server):
    live, late = [], []
    with MonitorClient(server.target) as early_client:
        watcher = threading.Thread(target=_collect, args=(early_client, 0, live))
        watcher.start()
        time.sleep(0.2)  # the stream is open before the first round
        scheme = make_scheme("msgc", n=8, jobs=10, B=1, W=2, lam=2)
        simulate_with_log(scheme, trace, make_policy("paper", mu=0.2), 2.2013, 1.0,
                          tmp_path / "run", monitor=server)
        _join(watcher)
    cfg, rounds, summary = read_run_log(tmp_path / "run.pb")
    assert live == rounds and len(rounds) == 11
    with MonitorClient(server.target) as client:  # after the end: full replay, then OK
        assert _collect(client, 0, late) == rounds
        status = client.status()
    assert not status.running and status.summary == summary and status.config == cfg
    assert status.round == 10 and status.waits == summary.waits
    assert status.decoded_jobs == 10 and status.run_id == cfg.run_id


def test_from_round_replays_then_follows(server):
    recs = _records(8)
    for rec in recs[:5]:
        server.publish(rec)
    got = []
    with MonitorClient(server.target) as client:
        t = threading.Thread(target=_collect, args=(client, 3, got))
        t.start()
        time.sleep(0.2)
        for rec in recs[5:]:
            server.publish(rec)
        server.finish()
        _join(t)
        assert got == recs[3:]
        assert _collect(client, 100) == []  # beyond the end of a finished run: empty, OK
    with pytest.raises(ValueError, match="after round"):
        server2 = MonitorServer()
        try:
            server2.publish(recs[2])
            server2.publish(recs[1])
        finally:
            server2.close(grace=0)


def test_request_stop_sets_the_event(server):
    seen = []
    server._on_stop = seen.append
    with MonitorClient(server.target) as client:
        assert not server.stop_requested.is_set()
        reply = client.request_stop("operator says so")
        assert reply.accepted and server.stop_requested.is_set()
        assert server.stop_reason == "operator says so" and seen == ["operator says so"]
        assert client.request_stop("again").message == "stop already requested"
        assert client.status().stop_requested
        server.finish(run_summary(runtime_s=1, rounds=1, waits=0, decoded_jobs=1, stopped=True))
        assert not client.request_stop().accepted


def test_token_required_and_checked():
    with MonitorServer(token="s3cret-token") as srv:
        for token in (None, "wrong", "s3cret-token-but-longer"):
            with MonitorClient(srv.target, token=token) as client:
                for call in (client.status, client.request_stop, lambda: _collect(client)):
                    with pytest.raises(grpc.RpcError) as err:
                        call()
                    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert not srv.stop_requested.is_set()
        with MonitorClient(srv.target, token="s3cret-token") as client:
            assert client.status().round == -1
        with pytest.raises(ValueError, match="wrong"):
            tcli.watch(srv.target, token="nope", as_json=True, out=io.StringIO())


def test_non_loopback_bind_needs_a_token():
    with pytest.raises(ValueError, match="non-loopback.*token"):
        MonitorServer("0.0.0.0:0")
    with pytest.raises(ValueError, match="non-loopback"):
        MonitorServer("[::]:0")
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert is_loopback("127.0.0.2") and not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert not is_loopback("example.org")
    assert split_address("[::1]:80") == ("::1", 80)
    for bad in ("nohost", ":80", "127.0.0.1:x", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            split_address(bad)
    with pytest.raises(ValueError, match="token"):
        MonitorServer(token="has space")


def test_malformed_requests_get_invalid_argument(server):
    with MonitorClient(server.target) as client:
        with pytest.raises(grpc.RpcError) as err:
            _collect(client, from_round=-1)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "from_round" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            client.request_stop("x" * 5000)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert not server.stop_requested.is_set()
    # bytes that are not a WatchRequest at all
    with grpc.insecure_channel(server.target) as channel:
        raw = channel.unary_stream("/gcode.v1.Monitor/WatchRounds",
                                   request_serializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            list(raw(b"\xff\xff\xff", timeout=5))
        assert err.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)


def test_slow_client_does_not_stall_publish(server):
    # ~80 KB records (256 workers with tasks) so that gRPC flow control really pushes back
    from gcode.codes import MiniTask
    plans = [[MiniTask(0, 0, tuple(range(w, w + 28)), tuple(np.linspace(0, 1, 28)))]
             for w in range(256)]
    recs = [round_record(round=r, plans=plans, arrival_s=np.ones(256), duration_s=1.0)
            for r in range(200)]
    assert len(recs[0].SerializeToString()) > 60_000
    received = []
    stop = threading.Event()

    def slow():
        with MonitorClient(server.target) as client:
            for rec in client.watch(0):
                received.append(rec.round)
                if stop.wait(0.05):
                    return

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    worst, start = 0.0, time.perf_counter()
    for rec in recs:
        t0 = time.perf_counter()
        server.publish(rec)
        worst = max(worst, time.perf_counter() - t0)
    total = time.perf_counter() - start
    behind = len(received)
    stop.set()
    _join(t)
    print(f"publish x200: total {total:.3f} s, worst {worst * 1e3:.1f} ms, slow client had {behind}")
    assert total < 2.0 and worst < 0.25, (total, worst)
    assert behind < 100, f"the client was not slow ({behind} received), the test proves nothing"
    with MonitorClient(server.target) as fast:  # a fresh client still gets everything
        server.finish()
        assert [r.round for r in _collect(fast)] == list(range(200))


def _bind_again(port, attempts=50):
    for _ in range(attempts):
        try:
            return MonitorServer(f"127.0.0.1:{port}")
        except ValueError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} did not become free")


def test_watch_reconnects_after_server_restart():
    first = MonitorServer()
    port = first.port
    recs = _records(6)
    for rec in recs[:3]:
        first.publish(rec)
    out, err = io.StringIO(), io.StringIO()
    codes = []
    t = threading.Thread(target=lambda: codes.append(tcli.watch(
        f"127.0.0.1:{port}", as_json=True, out=out, err=err, retries=20, backoff_s=0.05)))
    t.start()
    deadline = time.monotonic() + TIMEOUT
    while out.getvalue().count("\n") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.close(grace=0)
    time.sleep(0.3)  # the watcher notices and retries while nothing listens
    second = _bind_again(port)
    try:
        for rec in recs[3:]:  # the restarted coordinator resumes at round 3
            second.publish(rec)
        second.finish()
        _join(t)
    finally:
        second.close(grace=0)
    assert codes == [0]
    rounds = [json.loads(line)["round"] for line in out.getvalue().splitlines()]
    assert rounds == list(range(6))
    assert "reconnecting" in err.getvalue()


def test_watch_gives_up_after_bounded_retries():
    srv = MonitorServer()
    port = srv.port
    srv.close(grace=0)
    err = io.StringIO()
    start = time.monotonic()
    code = tcli.watch(f"127.0.0.1:{port}", as_json=True, out=io.StringIO(), err=err,
                      retries=2, backoff_s=0.05)
    assert code == 1 and "gave up after 2 reconnect attempts" in err.getvalue()
    assert time.monotonic() - start < 60  # a bound against a hang, not a speed


def test_watch_terminal_view_and_stop_command(server, capsys):
    recs = _records(3)
    for rec in recs:
        server.publish(rec)
    parser = build_parser()
    args = parser.parse_args(["watch", server.target, "--stop", "enough"])
    assert tcli.cmd_watch(args) == 0
    assert "stop accepted" in capsys.readouterr().out and server.stop_requested.is_set()
    server.finish(run_summary(runtime_s=6.0, rounds=3, waits=0, decoded_jobs=3, stopped=True))
    out = io.StringIO()
    assert tcli.watch(server.target, out=out) == 0
    text = out.getvalue()
    assert "round 2" in text and "stragglers 1 [2]" in text and "loss m0=0.3333" in text
    assert "run finished" in text and "runtime 6.0000 s" in text and "stopped early" in text
    with pytest.raises(ValueError, match="from-round"):
        tcli.watch(server.target, from_round=-2)


def test_monitor_flags_and_token(monkeypatch):
    """gcode train --monitor serves where it says, with the token of --monitor-token or else
    $GCODE_MONITOR_TOKEN; a non-loopback address without a token is refused."""
    from gcode.cli.flags import given
    from gcode.cli.train import monitor_token
    parse = lambda *argv: build_parser().parse_args(["train", *argv])
    assert "run.monitor" not in given(parse()) and monitor_token(parse()) is None
    monkeypatch.setenv(tcli.TOKEN_ENV, "env-token")
    args = parse("--monitor", "127.0.0.1:0")
    assert monitor_token(args) == "env-token"
    assert monitor_token(parse("--monitor-token", "flag")) == "flag"
    srv = MonitorServer(given(args)["run.monitor"], token=monitor_token(args))
    try:
        with MonitorClient(srv.target, token="env-token") as client:
            assert client.status().round == -1
    finally:
        srv.close(grace=0)
    with pytest.raises(ValueError, match="non-loopback"):
        MonitorServer("0.0.0.0:0", token=None)


def test_bounded_history_reports_out_of_range():
    with MonitorServer(max_history=3) as srv:
        for rec in _records(10):
            srv.publish(rec)
        srv.finish()
        with MonitorClient(srv.target) as client:
            with pytest.raises(grpc.RpcError) as err:
                _collect(client, 0)
            assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert [r.round for r in _collect(client, 8)] == [8, 9]


def _closed_by_server(sock, seconds: float = 30.0) -> bool:
    """Read until the server closes ``sock`` (True) or ``seconds`` pass (False: a hang guard)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


def test_idle_and_excess_connections_are_closed():
    """A real server on 127.0.0.1 with at most 3 connections and a 1 s idle timeout: a
    connection over the cap is closed at once; silent ones (no HTTP/2 handshake) and ones that
    make no call are closed; then a client's GetStatus works."""
    import socket
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
    with MonitorServer(max_connections=3, idle_timeout_s=1.0) as server:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        held[0].sendall(preface)  # an HTTP/2 connection that never calls
        over = socket.create_connection(("127.0.0.1", server.port))
        assert _closed_by_server(over)
        assert all(_closed_by_server(s) for s in held)
        for s in [*held, over]:
            s.close()
        with MonitorClient(server.target) as client:
            assert client.status(timeout=30).round == -1
    with pytest.raises(ValueError, match="idle_timeout_s must be > 0"):
        MonitorServer(idle_timeout_s=0)
