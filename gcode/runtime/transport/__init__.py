"""How job data, calls and results travel between the coordinator and its workers: the
interfaces the loop uses (:mod:`.base`), the shared-memory transport (:mod:`.shm`, its frames
in :mod:`.shm_frames`), the Ray transport (:mod:`.ray_transport`) and the in-process transport
with fake workers (:mod:`.inprocess`)."""

from __future__ import annotations

from .base import Reducer, Transport


def make_transport(kind: str, actors: list, ctx: tuple, timeout_s: float, pin: bool = False
                   ) -> Transport:
    """The transport ``cluster.transport`` names; ``auto`` is shared memory when every worker
    runs on this node, else Ray. ``pin``: page-lock shared memory (results go to a GPU)."""
    from .ray_transport import RayTransport
    if kind == "ray":
        return RayTransport(actors, ctx)
    from ...config import ConfigError
    from .shm import ShmTransport, all_local
    local = all_local(actors)
    if kind == "auto" and not local:
        return RayTransport(actors, ctx)
    if not local:
        raise ConfigError("cluster.transport", "shm needs every worker on the coordinator's "
                                               "node, and some run on other nodes; use ray or auto")
    return ShmTransport(actors, ctx, timeout_s, pin)


__all__ = ["Reducer", "Transport", "make_transport"]
