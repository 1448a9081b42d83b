"""The Monitor gRPC service (proto/gcode/v1/monitor.proto) (its gRPC server
mechanism is in :mod:`gcode.telemetry.grpc_server`, the client in
:mod:`gcode.telemetry.monitor_client`).

Server: :class:`MonitorServer` runs in gRPC's background thread pool. The run calls
:meth:`~MonitorServer.publish` once per round; it never blocks on clients. Records are kept
(serialized once) in a shared history list guarded by a condition variable; each WatchRounds
stream has its own cursor into that list and its own handler thread, so a slow client only
slows its own stream (gRPC flow control blocks that thread's ``yield``, nobody else).

Security: binds 127.0.0.1 by default, and every address the host name stands for
(:mod:`gcode.telemetry.endpoints`), or refuses to start: a port squatter on one of them would
otherwise receive clients and their tokens. Binding anything that is not loopback without a token
raises ValueError at startup. With a token every RPC must carry the metadata
``authorization: Bearer <token>`` (compared in constant time) or fails with UNAUTHENTICATED.
The channel itself is plaintext: on an untrusted network put it behind TLS or an SSH tunnel.

Limits (their values in :mod:`gcode.telemetry.grpc_server`): replies up to 64 MiB (gRPC's
default is 4 MiB; a 256-worker RoundRecord is far below 1 MiB, and a Status carries the
RunConfig, whose trace can be several MiB); requests up to ``MAX_REQUEST_BYTES`` (16 KiB),
refused from their length prefix before they are read, so with no receive window grown by
bandwidth probes: an unauthenticated caller cannot make the server hold large bodies (200
concurrent 60 MiB GetStatus calls with a wrong token: the process peaks about 2 MB above idle;
16 of them took it 940 MB above before). At most ``max_watchers`` concurrent WatchRounds
streams; further streams get RESOURCE_EXHAUSTED, while GetStatus and RequestStop always have
threads of their own (``CONTROL_THREADS``), so idle streams cannot lock the operator out.
Connections are bounded too: at most ``max_connections`` (``MAX_CONNECTIONS``) at once, further
ones closed as soon as they are accepted; one that never completes HTTP/2's handshake is closed
after ``HANDSHAKE_S`` seconds, and one without a call for ``idle_timeout_s``
(``IDLE_TIMEOUT_S``) is sent GOAWAY (a client reconnects on its next call; an open WatchRounds
stream is a call, so watchers stay). The history keeps the
last ``max_history`` records; older ones get OUT_OF_RANGE (the run log on disk has everything).
"""

from __future__ import annotations

import bisect
import hmac
import threading
from collections.abc import Callable, Iterator

import grpc

from ..terminal import escape
from ._proto.gcode.v1 import monitor_pb2
from .endpoints import MAX_MESSAGE_BYTES, check_token, is_loopback, join, split_address
from .grpc_server import (
    IDLE_TIMEOUT_S,
    MAX_CONNECTIONS,
    bind_every_address,
    connection_limits,
    new_server,
)
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
from .monitor_client import RETRYABLE, MonitorClient, WatchGaveUp  # noqa: F401 - re-exported

MAX_REASON_CHARS = 1024
SERVICE = monitor_pb2.DESCRIPTOR.services_by_name["Monitor"].full_name


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
                 on_stop: Callable[[str], None] | None = None,
                 max_connections: int = MAX_CONNECTIONS, idle_timeout_s: float = IDLE_TIMEOUT_S):
        host, port = split_address(address)
        check_token(token)
        if not is_loopback(host) and token is None:
            raise ValueError(
                f"refusing to serve the monitor on non-loopback address {address!r} without a "
                "token: anyone who can reach it could watch and stop the run. Pass a token "
                "(--monitor-token / GCODE_MONITOR_TOKEN) or bind 127.0.0.1")
        if max_watchers < 1 or max_history < 1 or max_connections < 1:
            raise ValueError("max_watchers, max_history and max_connections must be >= 1")
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {idle_timeout_s}")
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

        self._max_watchers = max_watchers
        self._watchers = 0
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
        limits = connection_limits(max_connections, idle_timeout_s)
        self._server, self.port, self.addresses = bind_every_address(
            lambda: new_server(SERVICE, handlers, max_watchers, max_message_bytes, limits),
            host, port)
        self._server.start()
        self.host = host

    # ---- the run's side ------------------------------------------------------------------
    @property
    def target(self) -> str:
        """"IP:PORT" a client on this machine can dial (the first bound address; a wildcard
        bind is dialled on loopback)."""
        ip, _, _ = self.addresses[0].rpartition(":")
        ip = ip.strip("[]")
        ip = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(ip, ip)
        return join(ip, self.port)

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
        """One stream: authorized, and within ``max_watchers`` open streams (beyond that the
        stream gets RESOURCE_EXHAUSTED; control calls never count against it)."""
        self._authorize(context)
        if request.from_round < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"from_round must be >= 0, got {request.from_round}")
        with self._cond:
            full = self._watchers >= self._max_watchers
            if not full:
                self._watchers += 1
        if full:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{self._max_watchers} WatchRounds streams are open, the most this "
                          f"monitor serves at once; GetStatus and RequestStop still answer")
        try:
            yield from self._stream(request, context)
        finally:
            with self._cond:
                self._watchers -= 1

    def _stream(self, request: WatchRequest, context) -> Iterator[bytes]:
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
            yield from batch
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
        if not request.reason.isprintable():
            bad = next(i for i, c in enumerate(request.reason) if not c.isprintable())
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"reason holds a control character at position {bad} "
                          f"({escape(request.reason[bad])}); send printable text")
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
