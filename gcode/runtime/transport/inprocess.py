"""An in-process transport: n fake workers in the coordinator's process, on a virtual clock.

The coordinator's loop, its policies, pipelining, dispatch at arrival, retries, late results and
faults run here exactly as on Ray, in milliseconds and deterministically, because nothing
sleeps: a call's answer is computed when the call is made (a real gradient, by the workload's
:class:`gcode.train.compute.TaskComputer`), and it *arrives* at a virtual time, when the loop's
waiting reaches it (:class:`VirtualClock`). A worker behaves as the real actor does
(:mod:`gcode.runtime.worker.actor`):

* a call reaches it ``script.latency_s`` after it was made (so a straggler may answer between
  its round's end and the next round's call, and its result arrives late);
* it takes ``script.sample_s`` seconds per sample of its tasks, then sleeps the call's injected
  delay (``inject.mode``: after computing, or up to the delay), plus ``script.delays[(r, w)]``;
* a call of a newer round makes its older calls stale (answered at once, with their compute
  time when they had finished computing);
* the faults a call carries (``faults``: raise, exit, nan, shape, tag) and ``kill`` act as on
  a real worker; ``script.deaths`` kills a worker in the middle of a round's call. A worker that
  died restarts at once without the run's context, and answers ``unprepared`` until it is sent
  again; its results carry a new pid.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import WorkSpec, job_indices
from ..wire import ERROR, OK, STALE, UNPREPARED, Call, Result
from .base import CodeFailure
from .ray_transport import host_array


class VirtualClock:
    """Seconds that pass only when the loop waits (``sleep``, or a transport's ``wait``)."""

    def __init__(self, start: float = 0.0):
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        """Advance ``seconds``, and at least to the next representable time when ``seconds`` > 0
        (a wait until a time t0 + x must reach it, though t0 + x - t0 may round below x)."""
        if seconds > 0:
            self.advance_to(max(self.t + seconds, float(np.nextafter(self.t, np.inf))))

    def advance_to(self, t: float) -> None:
        self.t = max(self.t, float(t))


@dataclass
class Script:
    """What the fake workers do besides computing: seconds per sample of work, seconds a call
    takes to reach its worker, extra seconds per (round, worker), and (round, worker) pairs whose
    worker dies during that round's call."""

    sample_s: float = 1e-4
    latency_s: float = 0.0
    delays: dict[tuple[int, int], float] = field(default_factory=dict)
    deaths: set[tuple[int, int]] = field(default_factory=set)


@dataclass(frozen=True)
class InJob:
    """A job's data as shipped: its parameters (read-only) and chunk ranges."""

    job: int
    params: np.ndarray = field(compare=False)
    bounds: tuple = field(compare=False)


@dataclass(eq=False)
class InCall:
    """A call in flight: when it answers (virtual seconds) and with what."""

    seq: int
    worker: int
    round: int
    start: float
    compute_end: float = 0.0
    finish: float = 0.0
    sleep_s: float = 0.0
    result: Result | None = None
    error: str | None = None
    raises: BaseException | None = None


@dataclass
class _Worker:
    ctx: str | None = None
    pid: int = 0
    calls: list[InCall] = field(default_factory=list)


class InProcessTransport:
    """The :class:`gcode.runtime.transport.base.Transport` of ``n`` fake workers (module doc)."""

    name = "inprocess"
    carries_gradients = True

    def __init__(self, n: int, spec: WorkSpec, ctx_id: str, script: Script | None = None,
                 clock: VirtualClock | None = None):
        """n workers that adopted run context ``ctx_id`` (the run's ``spec``)."""
        from gcode.train.compute import TaskComputer
        self.spec = spec
        self.script = script or Script()
        self.clock = clock or VirtualClock()
        # one replica serves every worker, with the coordinator's buffers, as a worker actor's
        self.computer = TaskComputer(spec.workload, "cpu", spec.buffers)
        self.workers = [_Worker(ctx=ctx_id, pid=1000 * (w + 1)) for w in range(n)]
        self.stats = {"inprocess_calls": 0, "deaths": 0}
        self._seq = itertools.count()

    # ---- ship job data -------------------------------------------------------------------
    def put_job(self, t: int, params: Any, bounds: tuple) -> InJob:
        copy = np.array(host_array(params), copy=True).reshape(-1)
        copy.flags.writeable = False
        return InJob(t, copy, bounds)

    def job_params(self, handle: InJob) -> np.ndarray:
        return handle.params

    def release_job(self, handle: InJob) -> None:
        """Nothing to free: the job's copy goes with its last reference."""

    # ---- call ----------------------------------------------------------------------------
    def reserve_results(self, workers: int, per_worker: int, nbytes: int) -> None:
        """Results are fresh arrays: nothing to reserve."""

    def call(self, w: int, call: Call, send_ctx: bool, jobs: list, result_bytes: int = 0) -> InCall:
        self.stats["inprocess_calls"] += 1
        worker = self.workers[w]
        now = self.clock.now() + self.script.latency_s  # when the call reaches the worker
        self._make_stale(w, call.round, now)
        handle = InCall(next(self._seq), w, call.round, now, now, now)
        worker.calls.append(handle)
        if send_ctx:
            worker.ctx = call.ctx
        elif worker.ctx != call.ctx:  # restarted since the run began: asks for the context
            handle.result = Result(status=UNPREPARED, round=call.round, worker=w)
            return handle
        if call.fault == "raise":
            handle.error = "raised InjectedFault"
            return handle
        if call.fault == "exit":
            self._die(w, "died (exit)", now)
            handle.error = "died (exit)"
            return handle
        bounds = {h.job: h.bounds for h in jobs}
        compute_s = self.script.sample_s * sum(bounds[t.job][c][1] - bounds[t.job][c][0]
                                               for t in call.tasks for c in t.chunks)
        delay = float(call.delay_s)
        sleep_s = delay if call.inject_mode == "add" else max(0.0, delay - compute_s)
        sleep_s += self.script.delays.get((call.round, w), 0.0)
        handle.compute_end, handle.sleep_s = now + compute_s, sleep_s
        handle.finish = now + compute_s + sleep_s
        if (call.round, w) in self.script.deaths:  # dies halfway through its compute
            handle.finish = handle.compute_end = now + compute_s / 2
            handle.error = "died (killed)"
            self._restart(worker)
            self.stats["deaths"] += 1
            return handle
        try:
            handle.result = self._compute(w, call, jobs, compute_s, sleep_s)
        except Exception as exc:  # noqa: BLE001 - the user's code: a CodeFailure on fetch
            from gcode.train.compute import TaskError
            from gcode.train.workload import WorkloadError
            if isinstance(exc, (WorkloadError, TaskError)):
                handle.raises = exc
            else:
                handle.error = f"raised {type(exc).__name__}"
        return handle

    def _compute(self, w: int, call: Call, jobs: list[InJob], compute_s: float,
                 sleep_s: float) -> Result:
        """Worker w's answer to ``call``: its tasks' coded gradients, as the actor computes them
        (faults nan, shape and tag spoil it as they spoil a real worker's)."""
        import torch

        from gcode.runtime.worker.host import TORCH_DTYPES
        spec, computer = self.spec, self.computer
        data = {h.job: h for h in jobs}
        out = torch.empty((len(call.tasks), spec.num_params), dtype=TORCH_DTYPES[call.dtype])
        losses, unreached = [], []
        for k, (job, _slot, chunks, coefs) in enumerate(call.tasks):
            computer.load(job, data[job].params)
            idx = job_indices(spec.seed, job, spec.batch_size, spec.num_samples)
            rows = [idx[data[job].bounds[c][0]:data[job].bounds[c][1]] for c in chunks]
            losses.append(computer.coded_gradient(rows, coefs, out[k]))
            unreached.append(computer.unreached)
        grads = out.numpy()
        if call.fault == "shape":
            grads = grads[:, :-1] if grads.shape[1] > 1 else np.empty((len(call.tasks) + 1, 1), grads.dtype)
        elif call.fault == "nan":
            grads = grads.copy()
            grads.flat[0:1] = np.nan
            if grads.size == 0:
                grads = np.full((1, spec.num_params), np.nan, grads.dtype)
        tag = call.round - 1 if call.fault == "tag" else call.round
        return Result(status=OK, round=tag, worker=w, attempt=call.attempt, tags=call.tags,
                      grads=grads, losses=losses, unreached=unreached, compute_s=compute_s,
                      sleep_s=sleep_s, pid=self.workers[w].pid)

    def _make_stale(self, w: int, r: int, now: float) -> None:
        """A call of round r, reaching worker w at ``now``, makes w's calls of older rounds that
        are unfinished by then stale at once."""
        worker = self.workers[w]
        for old in worker.calls:
            if old.round < r and old.finish > now and old.error is None and old.raises is None:
                done = now >= old.compute_end  # cut while it slept: its compute time is known
                old.result = Result(status=STALE, round=old.round, worker=w,
                                    elapsed_s=now - old.start,
                                    computed_s=old.compute_end - old.start if done else None,
                                    sleep_s=old.sleep_s if done else 0.0)
                old.finish = now
        worker.calls = [c for c in worker.calls if c.finish > now]

    def _die(self, w: int, reason: str, now: float | None = None) -> None:
        """Worker w's process ends (now, or at ``now``): its calls in flight fail; it restarts
        without the run's context."""
        now = self.clock.now() if now is None else now
        worker = self.workers[w]
        for c in worker.calls:
            if c.finish > now:
                c.result, c.error, c.raises, c.finish = None, reason, None, now
        self._restart(worker)
        self.stats["deaths"] += 1

    @staticmethod
    def _restart(worker: _Worker) -> None:
        worker.ctx = None
        worker.pid += 1
        worker.calls = []

    def kill(self, w: int) -> None:
        self._die(w, "died (killed)")

    # ---- poll and fetch arrivals ---------------------------------------------------------
    def ready(self, calls: list) -> list:
        now = self.clock.now()
        return [c for c in calls if c.finish <= now]

    def wait(self, calls: list, timeout: float) -> list:
        done = self.ready(calls)
        if done or not calls:
            if not calls and np.isfinite(timeout):
                self.clock.sleep(timeout)
            return done
        first = min(c.finish for c in calls)
        if first <= self.clock.now() + timeout:
            self.clock.advance_to(first)
        else:
            self.clock.sleep(timeout)
        return self.ready(calls)

    def fetch(self, calls: list) -> list[tuple[Result | None, str | None]]:
        out = []
        for c in calls:
            if c.raises is not None:
                out.append((None, CodeFailure(c.raises)))
                continue
            if c.result is not None and c.result.status == ERROR:
                out.append((None, c.result.error))
            else:
                out.append((c.result, c.error) if c.error is None else (None, c.error))
        return out

    def forget(self, calls: list) -> None:
        """Nothing is held for a call beyond its handle."""

    def close(self) -> None:
        """Nothing to release."""
