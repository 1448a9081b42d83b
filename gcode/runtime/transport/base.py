"""The interfaces between the coordinator's loop and its data plane.

The loop (:mod:`gcode.runtime.loop`) moves a round through four steps, and sees the data
plane only through these two Protocols:

1. **ship job data** (:meth:`Transport.put_job`): job t's parameters and chunk ranges, once per
   job, before any call needs them;
2. **call** (:meth:`Transport.call`): one :class:`gcode.runtime.wire.Call` per (round, worker);
3. **poll and fetch arrivals** (:meth:`Transport.wait`, :meth:`Transport.ready`,
   :meth:`Transport.fetch`): results come back as :class:`gcode.runtime.wire.Result`, and
   the loop's policy decides when the round ends;
4. **apply the decision** (:class:`Reducer`): the results the scheme's decoding names, with
   their coefficients, become job t's gradient, and its model steps.

Implementations:

Time is a :class:`Clock`: real time for real workers, a virtual one for in-process workers.

* the star plane: :class:`gcode.runtime.transport.shm.ShmTransport` (sockets and shared
  memory, one node), :class:`gcode.runtime.transport.ray_transport.RayTransport` (actor calls
  and the object store, any cluster) and
  :class:`gcode.runtime.transport.inprocess.InProcessTransport` (fake workers computing real
  gradients in this process on a virtual clock, for the loop's tests). Every result carries
  its gradient rows, and the reducer is the coordinator's fp64
  :class:`gcode.runtime.loop.decode.Decoder`: it sums them and the coordinator's model steps;
* a collective plane (issue 26) implements the same two Protocols the other way round: workers
  hold replicas, so ``put_job`` ships no parameters (``job_params`` reads a replica's), and a
  :class:`Result` carries no gradient (``grads`` None) but its coded losses and timings; its
  reducer's :meth:`Reducer.decode` sends each worker its coefficients, the workers fold a·m
  and allreduce, every replica steps, and it returns no gradient to the coordinator but a
  :class:`PlaneStep` (what the step did; with ``check_decode``, rank 0's decoded sum), so the
  loop steps nothing itself.

The loop never imports Ray, sockets or torch.distributed for any of this; which plane runs is
decided where the run is assembled (:func:`gcode.runtime.transport.make_transport`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, Self

import numpy as np

from ..wire import Call, Result


class CodeFailure(str):
    """A call's failure reason when the user's code raised on the worker (a WorkloadError or a
    TaskError, :mod:`gcode.train.compute`): ``raised TYPE: MESSAGE``, with ``error``, the
    exception as rebuilt here. The loop judges it (a faulty worker, or faulty code?)."""

    error: Exception

    def __new__(cls, error: Exception) -> Self:
        detail = " ".join(str(error).split())[:2000]
        self = super().__new__(cls, f"raised {type(error).__name__}: {detail}")
        self.error = error
        return self

    @classmethod
    def of(cls, kind: str, message: str) -> CodeFailure:
        """Rebuilt from a worker's report: its exception's class name and message."""
        from gcode.train.compute import TaskError
        from gcode.train.workload import WorkloadError
        return cls((TaskError if kind == "TaskError" else WorkloadError)(message))


class Clock(Protocol):
    """The run's time, in seconds: the loop times rounds and the policy's cuts with it."""

    def now(self) -> float:
        """Seconds since an arbitrary origin."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""


class WallClock:
    """Real time (``time.perf_counter``), for transports whose workers are real processes."""

    now = staticmethod(time.perf_counter)
    sleep = staticmethod(time.sleep)


class Transport(Protocol):
    """Moves job data, calls and results between the coordinator and its n workers. Handles
    (of jobs and of calls) are the transport's own, hashable objects."""

    name: str                 # recorded in the metrics ("shm", "ray", "inprocess", ...)
    stats: dict[str, int]     # counters recorded in the metrics (transport_calls)
    carries_gradients: bool   # results hold gradient rows (star); False: they stay on workers

    # -- ship job data --------------------------------------------------------------------
    def put_job(self, t: int, params: Any, bounds: tuple) -> Any:
        """Job t's parameters (a numpy array or a tensor on any device, copied before this
        returns) and chunk ranges, for the calls of every round that computes job t; returns
        the job's handle."""

    def job_params(self, handle: Any) -> np.ndarray:
        """A job's parameters as shipped (read-only)."""

    def release_job(self, handle: Any) -> None:
        """Job t is decoded: its data may go."""

    # -- call -----------------------------------------------------------------------------
    def reserve_results(self, workers: int, per_worker: int, nbytes: int) -> None:
        """Prepare ``per_worker`` result buffers of ``nbytes`` for each of the first ``workers``
        now, at setup, when the transport needs any."""

    def call(self, w: int, call: Call, send_ctx: bool, jobs: list, result_bytes: int = 0) -> Any:
        """Start worker w's ``call``; ``jobs`` are the handles of ``call.jobs``; ``send_ctx``:
        send the run context too (w may have lost it: a failure, a restart); its result's
        array takes ``result_bytes``. Returns the call's handle."""

    def kill(self, w: int) -> None:
        """Kill worker w's process (fault injection); it restarts without the run context."""

    # -- poll and fetch arrivals ---------------------------------------------------------
    def wait(self, calls: list, timeout: float) -> list:
        """The calls that finished: blocks until one has (or ``timeout`` seconds pass on the
        run's clock), then adds every other one finished by then."""

    def ready(self, calls: list) -> list:
        """The calls that finished, without blocking."""

    def fetch(self, calls: list) -> list[tuple[Result | None, str | None]]:
        """(result, None) or (None, failure reason) of each finished call; the reason is a
        :class:`CodeFailure` when the user's code raised on the worker."""

    def forget(self, calls: list) -> None:
        """The loop will never fetch these calls: drop what they hold once they finish."""

    def close(self) -> None:
        """Release what the transport holds."""


@dataclass
class PlaneStep:
    """What a data plane that steps the models itself (the collective plane's replicas) says of
    job t's update: the step's learning rate, gradient norm and clip factor
    (:class:`gcode.train.step.StepReport`), and, with ``check_decode``, the decoded gradient
    (Σ a·m, fp64, unscaled) and the job's parameters, for the coordinator's check."""

    lr: float | None = None
    grad_norm: float | None = None
    clip_factor: float = 1.0
    decoded: np.ndarray | None = None
    params: np.ndarray | None = None
    pending: bool = False  # queued: the workers step with their next call, and report then


class Reducer(Protocol):
    """Where the results a round kept become a job's update (step 4 of the module docstring).
    Results are stored as they arrive (``add``) and reduced once the scheme says the job is
    decodable (``decode``)."""

    on_device: bool           # results are staged on an accelerator as they arrive

    def stage(self, array: Any, threads: int = 1) -> tuple[Any, Any, Any]:
        """(``array`` where the job reduces, its finiteness flag, the flag's completion event
        or None): see :class:`gcode.runtime.loop.finite_checks.Staged`."""

    def add(self, key: Any, task: Any, array: Any, loss: float = 0.0) -> None:
        """Keep a result (``key``: a ResultKey) for ``task`` with its coded loss; ``array`` is
        its gradient row, None when the transport's results carry none."""

    def discard(self, keys: Any) -> None:
        """Forget stored results found invalid after they were stored."""

    def flush(self, min_pending: int | None = None) -> None:
        """Do reduction work that may start before the job is decodable (folds)."""

    def decode(self, t: int, decoding: list, unreached=()) -> tuple[Any, float]:
        """Job t's (gradient, batch loss) from ``decoding`` [(ResultKey, coefficient)], then
        forget job t's results. The gradient is a :class:`PlaneStep` when the plane applied it
        itself (the collective plane: the replicas stepped, leaving the parameters
        ``unreached`` by every result without a ``.grad``), so the coordinator steps nothing."""

    def forget_before(self, t: int) -> None:
        """Drop every job older than t."""

    def step_of(self, t: int) -> PlaneStep | None:
        """A pending job t's step (``decode`` gave ``PlaneStep(pending=True)``), once the plane
        reported it; None before."""

    def settle(self) -> None:
        """Apply every pending step now (before the models are read, and at the end)."""

    def state_dict(self) -> dict:
        """The stored results and partial sums, for a checkpoint."""

    def load_state_dict(self, state: dict) -> None:
        """Back to a checkpoint's :meth:`state_dict`."""


__all__ = ["Clock", "PlaneStep", "Reducer", "Transport", "WallClock"]
