"""Joining an existing Ray cluster (``cluster.address``) within a stated bound.

``ray.init(address="HOST:PORT")`` with nothing listening there retries for more than ten
minutes, printing only Ray's warnings. :func:`connect` first opens one TCP connection to the
address, waiting at most :data:`CONNECT_TIMEOUT_S`, and fails with a one-line error naming
``cluster.address`` when nothing answers; only then does it call ``ray.init``, whose own errors
are also reduced to one line. ``auto`` (Ray finds the cluster itself, e.g. inside ``ray job
submit``) is passed through unprobed, unless ``$RAY_ADDRESS`` names the endpoint.
"""

from __future__ import annotations

import socket

from ..config import ConfigError, endpoint, how_to_set
from ..config.address import FIELD

CONNECT_TIMEOUT_S = 5.0


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
                                 f"--port {port}) or fix "
                                 f"{how_to_set(FIELD, placeholder='HOST:PORT')}") from None


def connect(address: str) -> None:
    """``ray.init(address=...)`` after :func:`check_reachable`, its errors as one line."""
    import ray
    check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(FIELD, f"cannot join the Ray cluster at {address}: {first}") from None


__all__ = ["CONNECT_TIMEOUT_S", "check_reachable", "connect"]
