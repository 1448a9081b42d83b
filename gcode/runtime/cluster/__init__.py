"""Starting Ray and the worker actors: a loopback-only local instance or an existing cluster
(:mod:`.pool`), the watchdog that reports a dead local Ray node (:mod:`.watchdog`), and what
cleans up after a run that died (:mod:`.leftovers`, :mod:`.reaper`)."""

from .pool import (
    WorkerPool,
    ensure_ray,
    launch_workers,
    pool_session,
    shutdown_ray,
    start_local_ray,
    start_workers,
)

__all__ = ["WorkerPool", "ensure_ray", "launch_workers", "pool_session", "shutdown_ray",
           "start_local_ray", "start_workers"]
