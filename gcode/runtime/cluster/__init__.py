"""Starting Ray and the worker actors: a loopback-only local instance or an existing cluster
(:mod:`.pool`), and the watchdog that reports a dead local Ray node (:mod:`.watchdog`)."""

from .pool import WorkerPool, ensure_ray, launch_workers, pool_session, start_local_ray, start_workers

__all__ = ["WorkerPool", "ensure_ray", "launch_workers", "pool_session", "start_local_ray",
           "start_workers"]
