"""The form of a Ray cluster address (``scaling.address``, a file's ``cluster.address``),
checked with the rest of the config; whether anything answers there is checked when a run
joins it (:mod:`gcode.runtime.connect`)."""

from __future__ import annotations

import os

from .spec import ConfigError

FIELD = "cluster.address"


def endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that must accept a TCP connection for ``address``, or None when Ray resolves
    it itself (``auto``, ``local``, another client protocol). ConfigError for a malformed
    address."""
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


__all__ = ["FIELD", "endpoint"]
