"""Monitor addresses, resolved one way for the server and the client.

gRPC resolves a host name itself, and differently on each side: a server given ``localhost:P``
binds ``127.0.0.1:P`` and ``[::1]:P`` when it can, and settles for one of them when another
process holds the other, while a client may dial the other one. A token sent there goes to
whoever holds it. So gcode resolves the name itself (:func:`resolve`), the server binds every
address of that list or refuses to start, and the client dials the first address of the same
list as an IP literal (:func:`dial_target`), never the name.
"""

from __future__ import annotations

import functools
import ipaddress
import socket

MAX_MESSAGE_BYTES = 64 << 20
_LOCAL_NAMES = {"localhost", "ip6-localhost"}


def message_options(limit: int) -> list[tuple[str, int]]:
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
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"monitor address {address!r}: port {port_text!r} is not a number")
    port = int(port_text)
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


@functools.lru_cache(maxsize=1)
def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def resolve(host: str) -> list[str]:
    """The IP addresses ``host`` stands for, in the order a client tries them: an IP literal
    itself; ``localhost``: 127.0.0.1, then ::1 where this machine has IPv6 loopback; any other
    name: what the system resolver returns. ValueError naming the host when it resolves to
    nothing."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    low = host.lower()
    if low in _LOCAL_NAMES:
        v6 = ["::1"] if has_ipv6_loopback() else []
        return v6 if low == "ip6-localhost" else ["127.0.0.1", *v6]
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"monitor host {host!r} does not resolve: {exc}") from None
    out: list[str] = []
    for info in infos:
        ip = info[4][0].split("%", 1)[0]
        if ip not in out:
            out.append(ip)
    if not out:
        raise ValueError(f"monitor host {host!r} resolves to no address")
    return out


def join(ip: str, port: int) -> str:
    """"IP:PORT", with brackets for IPv6."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def dial_target(address: str) -> str:
    """The gRPC target a client dials for ``address``: the first resolved IP as a literal
    (``ipv4:A:P`` / ``ipv6:[A]:P``), so gRPC's own resolver never picks another address.
    A wildcard host (0.0.0.0, ::) means this machine's loopback."""
    host, port = split_address(address)
    ip = resolve(host)[0]
    if ip == "0.0.0.0":
        ip = "127.0.0.1"
    elif ip == "::":
        ip = "::1"
    return f"ipv6:{join(ip, port)}" if ":" in ip else f"ipv4:{join(ip, port)}"


def port_taken(ip: str, port: int) -> str | None:
    """Why ``ip:port`` cannot be bound now (e.g. "Address already in use"), or None."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_token(token: str | None) -> None:
    if token is None:
        return
    if not isinstance(token, str) or not token or not token.isprintable() or any(
            c.isspace() for c in token) or not token.isascii():
        raise ValueError("monitor token must be a non-empty printable ASCII string without spaces")


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


__all__ = ["MAX_MESSAGE_BYTES", "bearer", "check_token", "dial_target", "has_ipv6_loopback",
           "is_loopback", "join", "message_options", "port_taken", "resolve", "split_address"]
