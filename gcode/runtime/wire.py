"""The wire between the coordinator and its workers, declared once: a call's header and a
worker's result, with the result's validation.

Both travel pickled between the run's own processes only (Ray's object store, the
shared-memory transport's frames), never from disk. A call's header is encoded once, as a
versioned tuple of plain values (:meth:`Call.encode`), so that a dispatch costs one small
argument; a worker decodes it in one place (:meth:`Call.decode`). A result is a
:class:`Result`, which the coordinator checks against the call it answers
(:meth:`Result.problem`) before anything of it is used. This module imports neither torch nor
Ray: the coordinator's checks, the transports and the in-process test workers share it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

#: bumped whenever Call or Result changes shape; both ends refuse another version
WIRE_VERSION = 1

#: Result.status values
OK, STALE, UNPREPARED, ERROR = "ok", "stale", "unprepared", "error"


class WireError(ValueError):
    """A header that is not a call of this wire version."""


class WireTask(NamedTuple):
    """A mini-task as it travels: compute Σ coefficients · (gradient of chunk c of ``job``)."""

    job: int
    slot: int
    chunks: tuple[int, ...]
    coefficients: tuple[float, ...]

    @classmethod
    def of(cls, task) -> WireTask:
        """The wire form of a :class:`gcode.codes.MiniTask`."""
        return cls(task.job, task.slot, task.chunks, task.coefficients)


@dataclass(frozen=True, kw_only=True)
class Call:
    """One round's work for one worker: the tasks of round ``round`` (their jobs' data travel
    beside the header), stacked in message dtype ``dtype``; the injected delay and its mode;
    a fault to inject (tests, ``faults``); the attempt (retries of a failed worker count up)."""

    ctx: str                          # the run context the worker must have adopted
    round: int
    tasks: tuple[WireTask, ...]
    jobs: tuple[int, ...]             # the jobs the tasks need, sorted
    dtype: str                        # numpy name of the message dtype
    delay_s: float = 0.0
    inject_mode: str = "add"
    fault: str | None = None
    attempt: int = 0
    version: int = WIRE_VERSION

    def encode(self) -> bytes:
        """The header as bytes: a versioned tuple of plain values (cheap to pickle)."""
        tasks = tuple(tuple(t) for t in self.tasks)
        return pickle.dumps((self.version, self.ctx, self.round, tasks, self.jobs, self.dtype,
                             self.delay_s, self.inject_mode, self.fault, self.attempt), protocol=5)

    @classmethod
    def decode(cls, header: bytes) -> Call:
        """The call a header encodes (from this run's coordinator); WireError for another
        version or shape."""
        fields = pickle.loads(header)  # from this run's own coordinator process, never from disk
        if not isinstance(fields, tuple) or not fields or fields[0] != WIRE_VERSION:
            got = fields[0] if isinstance(fields, tuple) and fields else type(fields).__name__
            raise WireError(f"a call of wire version {got}; this worker speaks {WIRE_VERSION}")
        _, ctx, r, tasks, jobs, dtype, delay_s, inject_mode, fault, attempt = fields
        return cls(ctx=ctx, round=r, tasks=tuple(WireTask(*t) for t in tasks), jobs=tuple(jobs),
                   dtype=dtype, delay_s=delay_s, inject_mode=inject_mode, fault=fault,
                   attempt=attempt)

    def nbytes(self, params_bytes: int = 0) -> int:
        """Bytes this call moves out of the coordinator: its header, plus ``params_bytes`` of
        job parameters when the data plane ships them with the call."""
        return len(self.encode()) + params_bytes

    @property
    def tags(self) -> list[tuple[int, int]]:
        """(job, slot) of each task, in order: what a result for this call must be tagged."""
        return [(int(t.job), int(t.slot)) for t in self.tasks]


@dataclass(kw_only=True)
class Result:
    """A worker's answer to a call.

    ``ok``: ``grads`` stacks one row per task (``(tasks, num_params)`` in the call's dtype),
    ``losses`` the tasks' coded losses, ``tags`` their (job, slot), ``unreached`` for each task
    the trainable parameters (indices) its backward pass left without a gradient; ``compute_s`` and
    ``sleep_s`` (the injected delay slept) time it. ``stale``: the call gave up for a newer
    round's, after ``elapsed_s``; ``computed_s`` is its compute time when it had finished
    computing (cut while it slept). ``unprepared``: the worker lost the run's context (a
    restart) and needs it sent again. ``error``: the call raised (``error`` names how,
    ``message`` says what; ``workload``: the user's code raised, not the worker)."""

    status: str
    round: int
    worker: int
    attempt: int = 0
    tags: list[tuple[int, int]] = field(default_factory=list)
    grads: Any = None
    losses: list[float] = field(default_factory=list)
    compute_s: float = 0.0
    sleep_s: float = 0.0
    pid: int | None = None
    read_ahead: int = 0               # tasks whose batch was read ahead (cluster.prefetch)
    peak_rss_mb: float = 0.0
    elapsed_s: float | None = None    # stale: seconds until it gave up
    computed_s: float | None = None   # stale: compute time, when it had finished computing
    error: str | None = None
    message: str = ""
    workload: bool = False
    unreached: list[list[int]] | None = None  # per task: parameters its backward did not reach
    #: the collective plane: the decodes this call applied before computing, as
    #: {"applied": next decode number, "reports": [one report per decode]}
    steps: dict | None = None
    version: int = WIRE_VERSION

    #: bytes of a result's fixed fields (status, tags, timings) as they travel, about
    HEADER_BYTES = 128

    def nbytes(self) -> int:
        """Bytes this result moves into the coordinator: its gradient rows (none on a plane
        whose results carry none), its coded losses and task tags, and its fixed fields."""
        grads = self.grads.nbytes if isinstance(self.grads, np.ndarray) else 0
        return grads + 24 * len(self.losses) + self.HEADER_BYTES

    @staticmethod
    def problem(result: Any, call: Call, worker: int, num_params: int,
                gradients: bool = True) -> str | None:
        """None when ``result`` is a well-formed answer of ``worker`` to ``call`` (version,
        status, round and worker tags, task tags, shape, dtype, coded losses); else the reason
        it is not. Its gradient values are checked for finiteness where they are decoded
        (``Decoder.stage``). Never decode a result that did not pass both: it would be a
        mis-decode. ``gradients=False``: a data plane whose results carry no gradient rows
        (they stay on the workers), so ``grads`` must be None."""
        if not isinstance(result, Result):
            return f"not a result: {type(result).__name__}"
        if result.version != WIRE_VERSION:
            return f"wire version {result.version}, expected {WIRE_VERSION}"
        if result.status != OK:
            return f"status {result.status!r}"
        if result.round != call.round or result.worker != worker:
            return (f"tagged round {result.round} worker {result.worker}, expected round "
                    f"{call.round} worker {worker}")
        want = call.tags
        if [tuple(t) for t in result.tags] != want:
            return f"tags {result.tags} do not match the plan {want}"
        grads = result.grads
        if not gradients:
            if grads is not None:
                return f"grads is a {type(grads).__name__}; this data plane's results carry none"
        elif not isinstance(grads, np.ndarray):
            return f"grads is {type(grads).__name__}, not a numpy array"
        elif grads.shape != (len(call.tasks), num_params):
            return f"wrong shape {grads.shape}, expected {(len(call.tasks), num_params)}"
        elif grads.dtype != np.dtype(call.dtype):
            return f"wrong dtype {grads.dtype}, expected {np.dtype(call.dtype)}"
        losses = result.losses
        if not isinstance(losses, list) or len(losses) != len(call.tasks):
            return f"losses is not a list of {len(call.tasks)} values"
        if not all(isinstance(v, float) and np.isfinite(v) for v in losses):
            return "non-finite or non-float coded loss"
        return None


__all__ = ["ERROR", "OK", "STALE", "UNPREPARED", "WIRE_VERSION", "Call", "Result", "WireError",
           "WireTask"]
