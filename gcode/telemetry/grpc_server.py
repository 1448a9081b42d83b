"""The monitor's gRPC server as mechanism: its thread pool, message and connection limits, and
binding every address a host name stands for. The service (what the RPCs do) is
:class:`gcode.telemetry.monitor.MonitorServer`; its module docstring says why each limit is set.

Invariants: the pool always keeps :data:`CONTROL_THREADS` threads beyond the streams' cap, so
idle WatchRounds streams can never lock GetStatus or RequestStop out; a server holds *every*
address of its host or none (a squatter on one of them would receive clients and tokens).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from .endpoints import join, port_taken, resolve

#: the largest request the server reads (a StopRequest's reason of 1,024 characters is at most
#: 4 KiB): a larger one is refused from its length prefix, before it is read
MAX_REQUEST_BYTES = 16 << 10
#: pool threads kept free of WatchRounds streams, for GetStatus, RequestStop and rejections
CONTROL_THREADS = 8
#: RPCs held at once beyond max_watchers (queued short calls; more get RESOURCE_EXHAUSTED)
RPC_HEADROOM = 64
#: TCP connections held at once; gRPC closes further ones as soon as they are accepted
MAX_CONNECTIONS = 64
#: seconds a connection may stay without a call before gRPC closes it (GOAWAY: clients
#: reconnect unnoticed); one that never completes HTTP/2's handshake goes after HANDSHAKE_S
IDLE_TIMEOUT_S = 60.0
HANDSHAKE_S = 5.0


def connection_limits(max_connections: int, idle_timeout_s: float) -> list[tuple[str, int]]:
    """gRPC channel options that bound connections: how many, idle and handshake time."""
    return [("grpc.max_allowed_incoming_connections", int(max_connections)),
            ("grpc.max_connection_idle_ms", int(idle_timeout_s * 1000)),
            ("grpc.server_handshake_timeout_ms", int(min(HANDSHAKE_S, idle_timeout_s) * 1000))]


def new_server(service: str, handlers: dict, max_watchers: int, max_message_bytes: int,
               limits: list[tuple[str, int]]) -> grpc.Server:
    """A gRPC server for ``service``'s ``handlers`` whose pool keeps CONTROL_THREADS threads
    beyond ``max_watchers`` streams."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_watchers + CONTROL_THREADS,
                           thread_name_prefix="gcode-monitor"),
        options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            # no receive window grown by bandwidth probes: what a caller can push before its
            # length prefix is refused stays at HTTP/2's small default per stream
            ("grpc.http2.bdp_probe", 0),
            ("grpc.so_reuseport", 0),  # never share the port with another process
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            *limits,  # idle and excess connections are closed
        ],
        maximum_concurrent_rpcs=max_watchers + RPC_HEADROOM)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    return server


def bind_every_address(make_server: Callable[[], grpc.Server], host: str, port: int):
    """(server, port, ["IP:PORT", ...]) with *every* address ``host`` resolves to bound
    (:func:`gcode.telemetry.endpoints.resolve`); ValueError naming the address that is taken.
    With port 0 the same free port is sought on all of them (a few tries)."""
    ips = resolve(host)
    for _attempt in range(8 if port == 0 else 1):
        server = make_server()
        chosen, bound, failure = port, [], None
        for ip in ips:
            target = join(ip, chosen)
            why = port_taken(ip, chosen) if chosen else None
            got = 0
            if why is None:
                try:
                    got = server.add_insecure_port(target)
                except RuntimeError as exc:
                    why = str(exc)
            if not got:
                failure = (target, why or "address in use or not local?")
                break
            chosen = got
            bound.append(join(ip, got))
        if failure is None:
            return server, chosen, bound
        server.stop(None)
        if port != 0 or not bound:
            break
    target, why = failure
    extra = (f", one of the addresses {host!r} stands for ({', '.join(ips)}); the monitor must "
             f"hold all of them, or a client and its token could reach whoever holds the "
             f"other" if len(ips) > 1 else "")
    raise ValueError(f"cannot bind the monitor to {target} ({why}){extra}")
