"""Joining an existing Ray cluster (``cluster.address``) within a stated bound.

``ray.init(address="HOST:PORT")`` with nothing listening there retries for more than ten
minutes, printing only Ray's warnings. :func:`connect` first opens one TCP connection to the
address, waiting at most :data:`CONNECT_TIMEOUT_S`, and fails with a one-line error naming
``cluster.address`` when nothing answers; only then does it call ``ray.init``, whose own errors
are also reduced to one line. ``auto`` (Ray finds the cluster itself, e.g. inside ``ray job
submit``) is passed through unprobed, unless ``$RAY_ADDRESS`` names the endpoint.
"""

from __future__ import annotations

import os
import socket

from ..config import ConfigError

CONNECT_TIMEOUT_S = 5.0
FIELD = "cluster.address"


def endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that must accept a TCP connection for ``address``, or None when Ray resolves
    it itself (``auto``, ``local``). ConfigError for a malformed address."""
    text = address.strip()
    if text in ("auto", "local"):
        env = os.environ.get("RAY_ADDRESS", "").strip()
        return endpoint(env) if text == "auto" and env and env != "auto" else None
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme != "ray":
            return None  # another client protocol: Ray's business
        text = text.split("/", 1)[0]
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(FIELD, f"expected HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    return host, int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """ConfigError naming cluster.address when nothing accepts a connection there in time."""
    target = endpoint(address)
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(FIELD, f"nothing answers at {host}:{port} ({why}, waited at most "
                                 f"{timeout_s:g} s): start the Ray head there (ray start --head "
                                 f"--port {port}) or fix --address") from None


def connect(address: str) -> None:
    """``ray.init(address=...)`` after :func:`check_reachable`, its errors as one line."""
    import ray
    check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(FIELD, f"cannot join the Ray cluster at {address}: {first}") from None


__all__ = ["CONNECT_TIMEOUT_S", "check_reachable", "connect", "endpoint"]
