"""The Monitor gRPC service (proto/gcode/v1/monitor.proto): server and client.

Server: :class:`MonitorServer` runs in gRPC's background thread pool. The run calls
:meth:`~MonitorServer.publish` once per round; it never blocks on clients. Records are kept
(serialized once) in a shared history list guarded by a condition variable; each WatchRounds
stream has its own cursor into that list and its own handler thread, so a slow client only
slows its own stream (gRPC flow control blocks that thread's ``yield``, nobody else).

Security: binds 127.0.0.1 by default. Binding anything that is not loopback without a token
raises ValueError at startup. With a token every RPC must carry the metadata
``authorization: Bearer <token>`` (compared in constant time) or fails with UNAUTHENTICATED.
The channel itself is plaintext: on an untrusted network put it behind TLS or an SSH tunnel.

Limits: messages up to 64 MiB both ways on server and client (gRPC's default is 4 MiB; a
256-worker RoundRecord is far below 1 MiB, and a Status carries the RunConfig, whose trace can
be several MiB). At most ``max_watchers`` concurrent streams; further RPCs get
RESOURCE_EXHAUSTED. The history keeps the last ``max_history`` records; older ones get
OUT_OF_RANGE (the run log on disk has everything).
"""

from __future__ import annotations

import bisect
import hmac
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc

from ._proto.gcode.v1 import monitor_pb2, monitor_pb2_grpc
from .messages import (
    RoundRecord,
    RunConfig,
    RunSummary,
    Status,
    StatusRequest,
    StopReply,
    StopRequest,
    WatchRequest,
)

MAX_MESSAGE_BYTES = 64 << 20
MAX_REASON_CHARS = 1024
SERVICE = monitor_pb2.DESCRIPTOR.services_by_name["Monitor"].full_name
_LOCAL_NAMES = {"localhost", "ip6-localhost"}


def _message_options(limit: int) -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def split_address(address: str) -> tuple[str, int]:
    """("host", port) from "HOST:PORT" or "[v6]:PORT"; ValueError naming what is wrong."""
    if not isinstance(address, str) or ":" not in address:
        raise ValueError(f"monitor address must be HOST:PORT, got {address!r}")
    host, _, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError(f"monitor address {address!r} has no host (use 127.0.0.1:PORT)")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"monitor address {address!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"monitor address {address!r}: port must be 0..65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume it is reachable from outside


def _check_token(token: str | None) -> None:
    if token is None:
        return
    if not isinstance(token, str) or not token or not token.isprintable() or any(
            c.isspace() for c in token) or not token.isascii():
        raise ValueError("monitor token must be a non-empty printable ASCII string without spaces")


def _bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _identity(data: bytes) -> bytes:
    return data


class MonitorServer:
    """The Monitor service of one run. See the module docstring for threading and security.

    >>> server = MonitorServer()              # 127.0.0.1, a free port
    >>> server.port                           # doctest: +SKIP
    >>> server.publish(record)                # each round; never blocks
    >>> server.stop_requested.is_set()        # a client called RequestStop
    >>> server.finish(summary); server.close()
    """

    def __init__(self, address: str = "127.0.0.1:0", token: str | None = None, *,
                 config: RunConfig | None = None, max_watchers: int = 8,
                 max_history: int = 100_000, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 on_stop: Callable[[str], None] | None = None):
        host, _ = split_address(address)
        _check_token(token)
        if not is_loopback(host) and token is None:
            raise ValueError(
                f"refusing to serve the monitor on non-loopback address {address!r} without a "
                "token: anyone who can reach it could watch and stop the run. Pass a token "
                "(--monitor-token / GCODE_MONITOR_TOKEN) or bind 127.0.0.1")
        if max_watchers < 1 or max_history < 1:
            raise ValueError("max_watchers and max_history must be >= 1")
        self.address = address
        self._token = None if token is None else token.encode()
        self._on_stop = on_stop
        self._max_history = max_history
        self._cond = threading.Condition()
        self._records: list[bytes] = []   # serialized RoundRecords, oldest first
        self._rounds: list[int] = []      # their round numbers (increasing)
        self._base = 0                    # absolute index of _records[0]
        self._finished = False
        self._closing = False
        self._closed = False
        self._status = Status(round=-1, running=True)
        self._last_loss: dict[int, object] = {}
        self.stop_requested = threading.Event()
        self.stop_reason = ""
        if config is not None:
            self.set_config(config)

        workers = max_watchers + 4
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gcode-monitor"),
            options=_message_options(max_message_bytes) + [
                ("grpc.so_reuseport", 0),  # never share the port with another process
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            ],
            maximum_concurrent_rpcs=workers)
        handlers = {
            "WatchRounds": grpc.unary_stream_rpc_method_handler(
                self._watch_rounds, request_deserializer=WatchRequest.FromString,
                response_serializer=_identity),
            "GetStatus": grpc.unary_unary_rpc_method_handler(
                self._get_status, request_deserializer=StatusRequest.FromString,
                response_serializer=Status.SerializeToString),
            "RequestStop": grpc.unary_unary_rpc_method_handler(
                self._request_stop, request_deserializer=StopRequest.FromString,
                response_serializer=StopReply.SerializeToString),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),))
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ValueError(f"cannot bind the monitor to {address!r} (address in use or not "
                             f"local?): {exc}") from None
        if not self.port:
            raise ValueError(f"cannot bind the monitor to {address!r} (address in use?)")
        self._server.start()
        self.host = host

    # ---- the run's side ------------------------------------------------------------------
    @property
    def target(self) -> str:
        """"HOST:PORT" a client on this machine can dial."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def set_config(self, config: RunConfig) -> None:
        with self._cond:
            self._status.config.CopyFrom(config)
            self._status.run_id = config.run_id
            self._status.rounds_planned = config.rounds_planned

    def set_status(self, **fields) -> None:
        """Set Status fields (e.g. ``running=False``, ``rounds_planned=40``, ``config=cfg``)."""
        with self._cond:
            for key, value in fields.items():
                if key == "config":
                    self._status.config.CopyFrom(value)
                    self._status.run_id = value.run_id
                elif key in ("summary",):
                    self._status.summary.CopyFrom(value)
                else:
                    setattr(self._status, key, value)

    def publish(self, record: RoundRecord) -> None:
        """Append a round (rounds must increase) and wake the streams. Never blocks on clients:
        it serializes once and holds the lock for a list append."""
        data = record.SerializeToString()
        stragglers = sum(w.straggler for w in record.workers)
        with self._cond:
            if self._finished or self._closing:
                raise RuntimeError("publish() after finish() or close()")
            if self._rounds and record.round <= self._rounds[-1]:
                raise ValueError(f"round {record.round} published after round {self._rounds[-1]}")
            self._records.append(data)
            self._rounds.append(record.round)
            if len(self._records) > 2 * self._max_history:  # amortized trim
                drop = len(self._records) - self._max_history
                del self._records[:drop], self._rounds[:drop]
                self._base += drop
            s = self._status
            s.round = record.round
            s.decoded_jobs += len(record.decoded_jobs)
            s.waits += int(record.fell_back)
            s.wall_time_s = record.wall_time_s
            s.stragglers = stragglers
            for loss in record.losses:
                self._last_loss[loss.model] = loss
            if record.losses:
                del s.last_loss[:]
                s.last_loss.extend(self._last_loss[m] for m in sorted(self._last_loss))
            self._cond.notify_all()

    def finish(self, summary: RunSummary | None = None) -> None:
        """The run ended: every stream sends what is left and completes with OK."""
        with self._cond:
            self._finished = True
            self._status.running = False
            if summary is not None:
                self._status.summary.CopyFrom(summary)
            self._cond.notify_all()

    def close(self, grace: float = 1.0) -> None:
        """Stop serving. Streams of an unfinished run end with UNAVAILABLE (clients resume)."""
        with self._cond:
            if self._closed:
                return
            self._closed = self._closing = True
            self._cond.notify_all()
        self._server.stop(grace).wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def finished(self) -> bool:
        return self._finished

    # ---- RPC handlers ----------------------------------------------------------------------
    def _authorize(self, context) -> None:
        if self._token is None:
            return
        for key, value in context.invocation_metadata():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(given, b"Bearer " + self._token):
                    return
                break
        context.abort(grpc.StatusCode.UNAUTHENTICATED,
                      "missing or wrong token: send metadata 'authorization: Bearer <token>'")

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _watch_rounds(self, request: WatchRequest, context) -> Iterator[bytes]:
        self._authorize(context)
        if request.from_round < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"from_round must be >= 0, got {request.from_round}")
        context.add_callback(self._wake)  # a cancelled client wakes its waiting handler
        with self._cond:
            if self._base and self._rounds and request.from_round < self._rounds[0]:
                context.abort(grpc.StatusCode.OUT_OF_RANGE,
                              f"round {request.from_round} is no longer held (oldest: "
                              f"{self._rounds[0]}); read the run log instead")
            cursor = self._base + bisect.bisect_left(self._rounds, request.from_round)
        while True:
            with self._cond:
                while (cursor >= self._base + len(self._records) and not self._finished
                       and not self._closing and context.is_active()):
                    self._cond.wait(timeout=1.0)
                if cursor < self._base:
                    context.abort(grpc.StatusCode.OUT_OF_RANGE,
                                  "this client fell behind the retained history; resume from "
                                  f"round {self._rounds[0]} or read the run log")
                batch = self._records[cursor - self._base:]
                finished, closing = self._finished, self._closing
            if not context.is_active():
                return
            for data in batch:
                yield data
            cursor += len(batch)
            if not batch and closing:
                context.abort(grpc.StatusCode.UNAVAILABLE,
                              "monitor shutting down before the run finished; reconnect")
            if not batch and finished:
                return

    def _get_status(self, request: StatusRequest, context) -> Status:
        self._authorize(context)
        with self._cond:
            status = Status()
            status.CopyFrom(self._status)
            status.stop_requested = self.stop_requested.is_set()
        return status

    def _request_stop(self, request: StopRequest, context) -> StopReply:
        self._authorize(context)
        if len(request.reason) > MAX_REASON_CHARS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"reason is {len(request.reason)} characters; at most {MAX_REASON_CHARS}")
        with self._cond:
            if self._finished:
                return StopReply(accepted=False, message="the run has already finished")
            again = self.stop_requested.is_set()
            if not again:
                self.stop_reason = request.reason
                self.stop_requested.set()
            self._status.stop_requested = True
        if not again and self._on_stop is not None:
            self._on_stop(request.reason)
        return StopReply(accepted=True, message="stop already requested" if again else
                         "stopping after the current round's decode")


#: status codes after which a watcher reconnects (the server went away or is restarting)
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                       grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN,
                       grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED,
                       grpc.StatusCode.ABORTED})


class WatchGaveUp(RuntimeError):
    """The server stayed unreachable through every reconnect attempt."""


class MonitorClient:
    """A client of the Monitor service, with the same 64 MiB message limits as the server."""

    def __init__(self, address: str, token: str | None = None, *, timeout: float = 10.0,
                 max_message_bytes: int = MAX_MESSAGE_BYTES):
        split_address(address)
        _check_token(token)
        self.address = address
        self.timeout = timeout
        self._metadata = _bearer(token)
        self._options = _message_options(max_message_bytes) + [
            ("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.max_pings_without_data", 0)]
        self._channel = None
        self._stub = None
        self._connect()

    def _connect(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = grpc.insecure_channel(self.address, options=self._options)
        self._stub = monitor_pb2_grpc.MonitorStub(self._channel)

    def watch(self, from_round: int = 0) -> Iterator[RoundRecord]:
        """Stream rounds from ``from_round`` until the run ends (grpc.RpcError on failures)."""
        call = self._stub.WatchRounds(WatchRequest(from_round=from_round), metadata=self._metadata)
        try:
            yield from call
        finally:
            call.cancel()

    def status(self, timeout: float | None = None) -> Status:
        return self._stub.GetStatus(StatusRequest(), metadata=self._metadata,
                                    timeout=timeout or self.timeout)

    def request_stop(self, reason: str = "", timeout: float | None = None) -> StopReply:
        return self._stub.RequestStop(StopRequest(reason=reason), metadata=self._metadata,
                                      timeout=timeout or self.timeout)

    def follow(self, from_round: int = 0, *, retries: int = 10, backoff_s: float = 0.2,
               max_backoff_s: float = 5.0,
               on_retry: Callable[[int, grpc.RpcError, float], None] | None = None
               ) -> Iterator[RoundRecord]:
        """Like :meth:`watch`, but reconnects when the server goes away, resuming after the last
        round seen. Up to ``retries`` consecutive failed attempts, with exponential backoff;
        the count resets whenever a record arrives. Raises :class:`WatchGaveUp` after that,
        and re-raises non-retryable errors (UNAUTHENTICATED, INVALID_ARGUMENT, ...) at once."""
        next_round, failures = from_round, 0
        while True:
            try:
                for record in self.watch(next_round):
                    failures = 0
                    next_round = record.round + 1
                    yield record
                return
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                failures += 1
                if failures > retries:
                    raise WatchGaveUp(f"monitor {self.address} unreachable after {retries} "
                                      f"reconnect attempts: {exc.code().name}: {exc.details()}"
                                      ) from None
                delay = min(max_backoff_s, backoff_s * 2 ** (failures - 1))
                if on_retry is not None:
                    on_retry(failures, exc, delay)
                time.sleep(delay)
                self._connect()  # a fresh channel: skip the old one's reconnect backoff

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
