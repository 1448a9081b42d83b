"""The Monitor service's client (proto/gcode/v1/monitor.proto), used by ``gcode watch``.

It dials the first address the host resolves to (:func:`gcode.telemetry.endpoints.resolve`, the
list the server binds in full) as an IP literal, so its token only goes where the server is.
:meth:`MonitorClient.follow` reconnects when the server goes away, within a total time bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc

from ._proto.gcode.v1 import monitor_pb2_grpc
from .endpoints import MAX_MESSAGE_BYTES, bearer, check_token, dial_target, message_options
from .messages import RoundRecord, Status, StatusRequest, StopReply, StopRequest, WatchRequest

#: status codes after which a watcher reconnects (the server went away or is restarting)
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                       grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN,
                       grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED,
                       grpc.StatusCode.ABORTED})

#: seconds one connection attempt may take before it counts as failed (a silent listener)
CONNECT_TIMEOUT_S = 5.0
#: seconds without a record after which follow() gives up (gcode watch --give-up-after)
GIVE_UP_AFTER_S = 60.0


class WatchGaveUp(RuntimeError):
    """The server stayed unreachable through every reconnect attempt."""


class _NotReady(grpc.RpcError):
    """A connection attempt that did not complete in time (code UNAVAILABLE)."""

    def __init__(self, waited: float, refused: bool):
        super().__init__()
        self._waited, self._refused = waited, refused

    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        if self._refused:
            return "failed to connect (nothing listens there?)"
        return f"no gRPC server answered within {self._waited:.1f} s"


class MonitorClient:
    """A client of the Monitor service, with the same 64 MiB message limits as the server."""

    def __init__(self, address: str, token: str | None = None, *, timeout: float = 10.0,
                 max_message_bytes: int = MAX_MESSAGE_BYTES):
        self.target = dial_target(address)
        check_token(token)
        self.address = address
        self.timeout = timeout
        self._metadata = bearer(token)
        self._options = message_options(max_message_bytes) + [
            ("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.max_pings_without_data", 0)]
        self._channel = None
        self._stub = None
        self._connect()

    def _connect(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = grpc.insecure_channel(self.target, options=self._options)
        self._stub = monitor_pb2_grpc.MonitorStub(self._channel)

    def wait_ready(self, timeout: float) -> None:
        """Return once the server answers; raise an UNAVAILABLE RpcError when the connection is
        refused or does not complete within ``timeout`` s (a listener that never speaks gRPC)."""
        import threading
        settled = threading.Event()
        seen: list = []

        def on_change(state):
            if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                         grpc.ChannelConnectivity.SHUTDOWN):
                seen.append(state)
                settled.set()

        self._channel.subscribe(on_change, try_to_connect=True)
        try:
            settled.wait(max(timeout, 0.0))
        finally:
            self._channel.unsubscribe(on_change)
        if not seen or seen[0] != grpc.ChannelConnectivity.READY:
            raise _NotReady(timeout, refused=bool(seen))

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
               max_backoff_s: float = 5.0, give_up_after_s: float = GIVE_UP_AFTER_S,
               connect_timeout_s: float = CONNECT_TIMEOUT_S,
               on_retry: Callable[[int, grpc.RpcError, float], None] | None = None
               ) -> Iterator[RoundRecord]:
        """Like :meth:`watch`, but reconnects when the server goes away, resuming after the last
        round seen. It gives up (:class:`WatchGaveUp`) after ``retries`` failed attempts in a row
        or after ``give_up_after_s`` seconds of trying to (re)connect, whichever comes first:
        each attempt waits at most ``connect_timeout_s`` for the server to answer (a listener
        that never speaks gRPC counts as a failed attempt), and the backoff doubles from
        ``backoff_s`` to ``max_backoff_s``. A record resets the attempt count, a connection the
        clock. Non-retryable errors (UNAUTHENTICATED, INVALID_ARGUMENT, ...) are re-raised."""
        next_round, failures = from_round, 0
        trying_since: float | None = time.monotonic()
        while True:
            try:
                start = trying_since if trying_since is not None else time.monotonic()
                self.wait_ready(min(connect_timeout_s, start + give_up_after_s - time.monotonic()))
                trying_since = None
                for record in self.watch(next_round):
                    failures = 0
                    next_round = record.round + 1
                    yield record
                return
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                failures += 1
                if trying_since is None:
                    trying_since = time.monotonic()
                left = trying_since + give_up_after_s - time.monotonic()
                if failures > retries or left <= 0:
                    why = (f"{retries} reconnect attempts in a row" if failures > retries else
                           f"{give_up_after_s:g} s of trying")
                    raise WatchGaveUp(f"monitor {self.address} unreachable: gave up after {why} "
                                      f"({exc.code().name}: {exc.details()})") from None
                delay = min(max_backoff_s, backoff_s * 2 ** (failures - 1), left)
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


__all__ = ["CONNECT_TIMEOUT_S", "GIVE_UP_AFTER_S", "RETRYABLE", "MonitorClient", "WatchGaveUp"]
