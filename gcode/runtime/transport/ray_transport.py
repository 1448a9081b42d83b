"""How tasks go out and results come back: the coordinator's data plane (mechanism only).

A transport moves three things between the coordinator and its worker actors:

* job data: a job's parameters and chunk ranges, put once per job (``put_job``);
* calls: one per (round, worker), a :class:`gcode.runtime.wire.Call` plus the jobs it needs
  (``call``);
* results: polled (``wait`` / ``ready``) and fetched (``fetch``) as
  :class:`gcode.runtime.wire.Result`.

:class:`RayTransport` does all three through Ray (actor calls, the object store): it works
across nodes and survives actor restarts. :class:`gcode.runtime.transport.shm.ShmTransport` sends calls
and results over a Unix socket per worker and the arrays through shared memory, for workers on
the coordinator's node; it falls back to Ray for a worker whose connection is down.
:func:`gcode.runtime.transport.make_transport` picks one (``cluster.transport``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ..wire import Call, Result

#: seconds a fetch of a ready result may take before it counts as failed
FETCH_TIMEOUT_S = 30


def failure_kind(exc: BaseException) -> str:
    """A Ray error as a failure reason ('raised X', 'died (Y)' or 'error (Z)')."""
    from ray.exceptions import RayActorError, RayTaskError
    name = type(exc).__name__
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        return f"raised {type(cause).__name__ if cause is not None else name}"
    if isinstance(exc, RayActorError) or "Actor" in name:
        return f"died ({name})"
    return f"error ({name})"


def host_array(flat) -> np.ndarray:
    """A numpy array of ``flat`` (a tensor is copied to the host only when on a device)."""
    if isinstance(flat, np.ndarray):
        return flat
    return flat.detach().to("cpu").numpy()


class RayTransport:
    """Calls as Ray actor tasks, job data and results through the object store."""

    name = "ray"
    carries_gradients = True

    def __init__(self, actors: list, ctx: tuple):
        self.actors = actors
        self.ctx = ctx  # (context id, ObjectRef of the WorkSpec)
        self.stats = {"ray_calls": 0, "shm_calls": 0, "reattached": 0,
                      "result_buffers_reserved": 0, "result_buffers_made": 0}

    # ---- job data -------------------------------------------------------------------------
    def put_job(self, t: int, flat, bounds: tuple) -> Any:
        """Job t's (parameters, chunk ranges), copied once (``flat``, a numpy array or a tensor
        on any device, may be the live model's)."""
        import ray
        return ray.put((host_array(flat), bounds))

    def job_params(self, handle) -> np.ndarray:
        """A job's parameters (read-only)."""
        import ray
        return ray.get(handle)[0]

    def release_job(self, handle) -> None:
        """The job is decoded: its data may go (Ray frees it with the last reference)."""

    # ---- calls ----------------------------------------------------------------------------
    def reserve_results(self, workers: int, per_worker: int, nbytes: int) -> None:
        """Make ``per_worker`` result buffers of ``nbytes`` for each of the first ``workers``
        now, at setup, instead of in the first rounds (Ray's object store needs none)."""

    def call(self, w: int, call: Call, send_ctx: bool, jobs: list, result_bytes: int = 0) -> Any:
        """Start worker w's call; ``jobs`` are the handles ``put_job`` returned; its result
        array will take ``result_bytes``."""
        ctx_box = [self.ctx[1]] if send_ctx else None
        self.stats["ray_calls"] += 1
        return self.actors[w].compute.remote(call.encode(), ctx_box, *jobs)

    def kill(self, w: int) -> None:
        """Kill worker w's process (fault injection); Ray restarts it."""
        import ray
        ray.kill(self.actors[w], no_restart=False)

    def wait(self, calls: list, timeout: float) -> list:
        """The calls that finished: blocks until one has (or ``timeout`` s pass), then adds every
        other one finished by then."""
        import ray
        ready, rest = ray.wait(calls, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return ready

    def ready(self, calls: list) -> list:
        """The calls that finished, without blocking."""
        import ray
        return ray.wait(calls, num_returns=len(calls), timeout=0)[0] if calls else []

    def forget(self, calls: list) -> None:
        """The coordinator will never fetch these calls (Ray drops their results with the
        last reference)."""

    def fetch(self, calls: list) -> list[tuple[Result | None, str | None]]:
        """(result, None) or (None, failure reason) of each finished call: one ``ray.get`` when
        none failed. The reason is a CodeFailure when the user's code raised on the worker."""
        import ray
        if len(calls) > 1:
            with contextlib.suppress(Exception):  # some failed: learn which, one by one
                return [(payload, None) for payload in ray.get(calls, timeout=FETCH_TIMEOUT_S)]
        return [self._fetch_one(ref) for ref in calls]

    @staticmethod
    def _fetch_one(ref) -> tuple[Any, str | None]:
        import ray

        from gcode.train.compute import TaskError
        from gcode.train.workload import WorkloadError

        from .base import CodeFailure
        try:
            return ray.get(ref, timeout=FETCH_TIMEOUT_S), None
        except Exception as exc:  # noqa: BLE001 - any failure makes the worker a straggler
            cause = getattr(exc, "cause", None)
            if isinstance(cause, (WorkloadError, TaskError)):  # the user's code raised
                return None, CodeFailure(cause)
            return None, failure_kind(exc)

    def close(self) -> None:
        """Release what the transport holds (nothing for Ray)."""
