"""The live coordinator: the simulator's loop, on real Ray workers and real arrival times.

Per round r (mirrors :func:`gcode.sim.simulate`)::

    absorb late results of earlier rounds (scheme.accept_late)
    -> [checkpoint every K rounds / on a stop request: gcode.runtime.checkpoint] -> plan(r)
    -> issue job r: put model (r mod M)'s parameters and chunk ranges once (ray.put)
    -> dispatch compute(r, ...) to every worker
    -> loop: poll arrivals (ray.wait) -> policy (rounds.decide) -> decision
    -> record(r, arrived) -> policy.observe(r, times, load, end)
    -> decode every decodable job in fp64 -> step that job's model
    -> check decode deadlines -> log record, progress callback, run recorder

Mechanism (Ray calls, validation, retries) lives here; the round-ending *policy* is the
simulator's Policy object, applied by :func:`gcode.runtime.rounds.decide`. The scheme may be a
switching one (``auto``): rounds, delay, chunking and message dtype are read per round / per job.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..codes import DecodeError, MiniTask, ResultKey, Scheme
from ..config import TrainConfig
from ..sim.policy import Policy
from .data import WorkSpec, bounds_of, job_indices
from .decode import Decoder
from .health import DivergedError, RunFailed, check_params, confirm_worker_fault, explain_workload_error
from .inject import DelaySource
from .rounds import End, FallBack, RoundState, Wait, decide, partial_fallback
from .runlog import JsonlWriter
from .worker import check_result

ProgressFn = Callable[[dict], None]

APPROX_DELAYED = ("delayed-gradient SGD: one model; the gradient of job t (computed on the "
                  "parameters at round t) is applied when decoded, up to T rounds late")
APPROX_IGNORE = "ignore-stragglers: rescaled partial sums, a biased gradient estimate"


def _wire(task: MiniTask) -> tuple:
    return (task.job, task.slot, task.chunks, task.coefficients)


def _failure_kind(exc: BaseException) -> str:
    from ray.exceptions import RayActorError, RayTaskError
    name = type(exc).__name__
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        return f"raised {type(cause).__name__ if cause is not None else name}"
    if isinstance(exc, RayActorError) or "Actor" in name:
        return f"died ({name})"
    return f"error ({name})"


@dataclass
class Timings:
    """Coordinator seconds per phase, summed over rounds."""

    plan: float = 0.0       # late-result absorption and plan(r)
    issue: float = 0.0      # a new job's parameters into the object store (transfer out)
    dispatch: float = 0.0   # the compute.remote calls
    wait: float = 0.0       # dispatch end -> round decision (includes 'fetch' and 'fold')
    fetch: float = 0.0      # ray.get + validation of arrived results (transfer in; inside 'wait')
    fold: float = 0.0       # streaming fp64 accumulation of arrived results (inside 'wait')
    decode: float = 0.0     # record + decode of every decodable job
    step: float = 0.0       # optimizer steps
    check: float = 0.0      # check_decode diagnostics and held-out evaluation
    log: float = 0.0        # JSONL, run recorder, progress callback
    checkpoint: float = 0.0  # writing checkpoints (not part of 'overhead': optional, every K rounds)

    def overhead(self) -> float:
        """The coordinator's own work in a round: everything but waiting for workers."""
        return (self.plan + self.issue + self.dispatch + self.fetch + self.fold + self.decode
                + self.step + self.log)


@dataclass
class Coordinator:
    cfg: TrainConfig
    scheme: Scheme
    policy: Policy
    actors: list
    spec: WorkSpec
    models: list                 # one gcode.train.FlatModel per concurrent model
    optimizers: list
    delays: DelaySource          # injected seconds per (round, worker)
    writer: JsonlWriter
    progress: ProgressFn | None = None
    ctx: tuple = ("", None)      # (context id, ObjectRef of the WorkSpec) the workers adopted
    recorder: Any = None         # gcode.telemetry RunRecorder (run log + live monitor), optional
    auto_slope: bool = False     # measure the tuner's load slope live (scheme 'auto')
    checkpointer: Any = None     # gcode.runtime.checkpoint.Checkpointer, optional
    run_id: str = ""             # the run's id (kept across resumes)
    device: Any = None           # torch device of the models and the decode (None: CPU)
    decode_device: Any = None    # torch device of the fp64 decode (None: the host)
    decode_threads: int = 1      # host decode threads (host decode only)
    eval_dataset: Any = None     # held-out dataset for train.eval_every (read on the coordinator)

    # ---- state ------------------------------------------------------------------------
    jobs_ctx: dict = field(default_factory=dict)    # job -> ObjectRef of (flat params, bounds)
    job_dtype: dict = field(default_factory=dict)   # job -> message dtype
    late: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    pids: dict = field(default_factory=dict)
    restarts: dict = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    compute_s: list = field(default_factory=list)
    response_s: list = field(default_factory=list)
    slope_samples: list = field(default_factory=list)
    durations: list = field(default_factory=list)
    waits: int = 0
    decoded: int = 0
    late_used: int = 0
    retries: int = 0
    stragglers_total: int = 0
    max_rel_error: float | None = None
    last_loss: float | None = None
    model_loss: dict = field(default_factory=dict)  # model -> mean batch loss of its last job
    peak_rss_mb: dict = field(default_factory=dict)  # worker -> peak resident memory reported
    round_compute_s: float = 0.0  # Σ over rounds of the arrived workers' mean compute time
    evals: list = field(default_factory=list)      # {"round", "model", "loss"[, "accuracy"]}
    updates: list = field(default_factory=list)
    stopped: bool = False
    stop_reason: str = ""
    needs_ctx: set = field(default_factory=set)  # workers that failed since: resend the context
    late_dropped: int = 0        # straggler results in flight when a checkpoint was resumed
    start_round: int = 0         # first round of this session (the checkpoint's, when resumed)
    runtime_before: float = 0.0  # runtime_s of the sessions before a resume
    sessions: int = 1            # 1 + resumes
    resumed_from: str | None = None

    def __post_init__(self):
        self.n = self.scheme.n
        self.M = len(self.models)
        self.delayed = self.cfg.train.mode == "delayed"
        self.decoder = Decoder(self.spec.num_params, streaming=self.cfg.train.streaming_decode,
                               threads=self.decode_threads, device=self.decode_device)
        self.updates = [0] * self.M
        self._local = None  # a TaskComputer for check_decode, built on first use
        self.partial = partial_fallback(self.policy)
        self._bounds_cache: dict[tuple, tuple] = {}
        self._call_dtype: dict[tuple[int, int], np.dtype] = {}  # (round, worker) -> dtype sent
        self.faults = {}
        for f in self.cfg.faults:
            self.faults.setdefault((f.round, f.worker), f.kind)

    @property
    def T(self) -> int:
        return self.scheme.delay  # may grow when a switching scheme changes codes

    # ---- helpers ----------------------------------------------------------------------
    def model_of(self, t: int) -> int:
        return 0 if self.delayed else t % self.M

    def _issue(self, t: int) -> None:
        """Put model (t mod M)'s parameters and job t's chunk ranges in the store, once."""
        prev = t - self.M
        if not self.delayed and self.scheme.job_exists(prev) and not self.scheme.is_decoded(prev):
            raise RuntimeError(f"job {t} would start from model {t % self.M} before job {prev} "
                               f"updated it (M={self.M} must be >= T+1={self.T + 1})")
        check_params(self, t)  # a diverged model stops the run here (gcode.runtime.health)
        model = self.models[self.model_of(t)]
        self.put_job(t, model.params.numpy() if model.device.type == "cpu" else model.snapshot(),
                     self.scheme.message_dtype)

    def put_job(self, t: int, flat: np.ndarray, dtype) -> None:
        """Job t's parameters and chunk ranges, copied into the object store once (``flat`` may
        be a view of the live model: ``ray.put`` copies before returning)."""
        import ray
        fractions = np.asarray(self.scheme.chunk_fractions_for(t), dtype=np.float64)
        groups = tuple(self.scheme.chunk_groups_for(t))
        key = (fractions.tobytes(), groups)
        if key not in self._bounds_cache:
            self._bounds_cache[key] = bounds_of(fractions, self.cfg.train.batch_size, groups)
        self.job_dtype[t] = np.dtype(dtype)
        self.jobs_ctx[t] = ray.put((flat, self._bounds_cache[key]))

    def job_params(self, t: int) -> np.ndarray:
        """Job t's parameter snapshot (a read-only view of the object store's copy)."""
        import ray
        return ray.get(self.jobs_ctx[t])[0]

    def _dtype(self, tasks: list[MiniTask]) -> np.dtype:
        if not tasks:
            return np.dtype(np.float32)
        return np.result_type(*(self.job_dtype[t.job] for t in tasks))

    def _dispatch(self, r: int, w: int, tasks: list[MiniTask], attempt: int):
        import ray
        fault = self.faults.get((r, w)) if attempt == 0 else None
        jobs = sorted({t.job for t in tasks})
        delay = self.delays.get(r, w) if attempt == 0 else 0.0
        dtype = self._dtype(tasks)
        self._call_dtype[(r, w)] = dtype
        # the jobs' (parameters, chunk ranges) go as top-level arguments: Ray fetches them into
        # the worker before the call starts, from shared memory on the same node
        header = pickle.dumps((self.ctx[0], r, [_wire(t) for t in tasks], jobs, dtype.name, delay,
                               self.cfg.inject.mode, fault if fault != "kill" else None, attempt))
        ctx_box = [self.ctx[1]] if w in self.needs_ctx else None
        ref = self.actors[w].compute.remote(header, ctx_box, *[self.jobs_ctx[j] for j in jobs])
        if fault == "kill":
            ray.kill(self.actors[w], no_restart=False)
        return ref

    def _fetch(self, ref) -> tuple[Any, str | None]:
        import ray

        from gcode.train.workload import WorkloadError
        try:
            return ray.get(ref, timeout=30), None
        except Exception as exc:  # noqa: BLE001 - any failure makes the worker a straggler
            cause = getattr(exc, "cause", None)
            if isinstance(cause, WorkloadError):  # the user's code, not the worker, is at fault
                raise explain_workload_error(self, cause) from None  # a diverged model?
            return None, _failure_kind(exc)

    def _note_pid(self, w: int, payload: dict) -> None:
        pid = payload.get("pid")
        if pid is None:
            return
        if w in self.pids and self.pids[w] != pid:
            self.restarts[w] = self.restarts.get(w, 0) + 1
        self.pids[w] = pid

    def _store(self, w: int, r: int, tasks: list[MiniTask], payload: dict) -> None:
        for k, task in enumerate(tasks):
            if not self.scheme.is_decoded(task.job):
                self.decoder.add(ResultKey(w, r, task.slot), task, payload["grads"][k],
                                 payload["losses"][k])

    def _check(self, payload, r: int, w: int, tasks: list[MiniTask]) -> str | None:
        """Validate worker w's round-r result against what was sent (tags, shape, dtype)."""
        reason = check_result(payload, r, w, [_wire(t) for t in tasks], self.spec.num_params,
                              self._call_dtype[(r, w)], self.decode_threads)
        confirm_worker_fault(self, r, w, [t.job for t in tasks], reason)  # diverged model?
        return reason

    # ---- late results -----------------------------------------------------------------
    def _absorb_late(self, r: int) -> None:
        """Use stragglers' results that arrived after their round ended (scheme.accept_late),
        and log the ones that turned out to be failures. Never blocks."""
        import ray
        if not self.late:
            return
        self.late = self.late[-8 * self.n:]  # bound the bookkeeping (e.g. many dead calls)
        refs = [item[0] for item in self.late]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        ready = set(ready)
        keep = []
        for ref, rr, w, tasks in self.late:
            if ref not in ready:
                keep.append((ref, rr, w, tasks))
                continue
            payload, err = self._fetch(ref)
            if err is None and payload.get("status") == "stale":
                continue  # dropped by the worker when the next round reached it
            if err is None:
                err = self._check(payload, rr, w, tasks)
            if err is not None:  # a straggler that then failed: log it, use nothing
                self.needs_ctx.add(w)
                self.failures.append({"round": rr, "worker": w, "attempt": 0, "reason": err,
                                      "late": True})
                continue
            self._note_pid(w, payload)
            if rr >= r - self.T - 1:  # the scheme still holds round rr's plan
                self._store(w, rr, tasks, payload)
                self.scheme.accept_late(rr, w)
                self.late_used += 1
        self.late = keep

    # ---- one round ----------------------------------------------------------------------
    def _wait_round(self, r: int, plan: list[list[MiniTask]], pending: dict, t0: float,
                    info: dict) -> End:
        """Poll arrivals -> policy -> decision, until the round ends."""
        import ray
        cc = self.cfg.cluster
        state = RoundState(self.n)
        attempts = [0] * self.n
        failed_at: dict[int, float] = {}
        conforms = lambda stragglers: self.scheme.conforms(r, stragglers)
        while True:
            now = time.perf_counter() - t0
            decision = decide(state, now, self.policy, conforms, self.partial)
            if isinstance(decision, End):
                for ref, w in pending.items():
                    self.late.append((ref, r, w, plan[w]))
                info["failed"] = {w: reason for w, reason in state.failed.items()}
                return decision
            if isinstance(decision, FallBack):
                state.fell_back = True
                info["fallback_stragglers"] = np.flatnonzero(decision.stragglers).tolist()
                continue
            assert isinstance(decision, Wait)
            next_retry = math.inf
            for w in decision.retry:
                ready_at = failed_at[w] + cc.retry_backoff_s
                if now >= ready_at:
                    attempts[w] += 1
                    self.retries += 1
                    del state.failed[w]
                    pending[self._dispatch(r, w, plan[w], attempts[w])] = w
                else:
                    next_retry = min(next_retry, ready_at)
            if now > cc.round_timeout_s:
                missing = sorted(set(range(self.n)) - set(state.arrived))
                raise RunFailed(f"round {r} exceeded cluster.round_timeout_s="
                                   f"{cc.round_timeout_s}s waiting for workers {missing} "
                                   f"(failures: {state.failed or 'none'}){self._checkpoint_hint()}")
            until = min(decision.until, next_retry, cc.round_timeout_s + 1e-3)
            timeout = max(0.0, until - now)
            if not pending:
                time.sleep(min(timeout, 0.05))
                continue
            refs = list(pending)
            ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
            if ready and rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            arrived_at = time.perf_counter() - t0
            for ref in ready:
                w = pending.pop(ref)
                tp = time.perf_counter()
                payload, err = self._fetch(ref)
                if err is None:
                    err = self._check(payload, r, w, plan[w])
                self.timings.fetch += time.perf_counter() - tp
                if err is not None:
                    self.needs_ctx.add(w)
                    state.failed[w] = err
                    failed_at[w] = arrived_at
                    self.failures.append({"round": r, "worker": w, "attempt": attempts[w],
                                          "reason": err})
                    continue
                self._note_pid(w, payload)
                self.needs_ctx.discard(w)
                self.peak_rss_mb[w] = float(payload.get("peak_rss_mb", 0.0))
                state.arrived[w] = arrived_at
                tf = time.perf_counter()
                self._store(w, r, plan[w], payload)
                self.timings.fold += time.perf_counter() - tf
                if attempts[w] == 0:
                    self.compute_s.append(float(payload["compute_s"]))
                    response = arrived_at - float(payload["sleep_s"])
                    self.response_s.append(response)
                    load = self.scheme.round_load(r)
                    if load > 0:
                        self.slope_samples.append(response / load)
                info["arrival_s"][w] = arrived_at
                info["compute_s"][w] = float(payload["compute_s"])
                info["sleep_s"][w] = float(payload["sleep_s"])
            tf = time.perf_counter()
            self.decoder.flush()  # fold queued results a few at a time, while others compute
            self.timings.fold += time.perf_counter() - tf

    def _finish_job(self, t: int) -> dict:
        """Decode job t (already recorded decodable), check it, step its model."""
        import torch

        td = time.perf_counter()
        decoding = self.scheme.decode(t)
        grad, loss = self.decoder.decode(t, decoding)
        self.timings.decode += time.perf_counter() - td
        m = self.model_of(t)
        tr = self.cfg.train
        if not (math.isfinite(loss) and math.isfinite(float(grad.sum()))):
            raise DivergedError(f"model {m} diverged: job {t}'s decoded "
                                f"{'loss' if not math.isfinite(loss) else 'gradient'} is not "
                                f"finite (lower the learning rate?){self._checkpoint_hint()}")
        out = {"job": t, "model": m, "loss": loss / tr.batch_size}
        self.last_loss = self.model_loss[m] = out["loss"]
        tc = time.perf_counter()
        if tr.check_decode:
            direct = self._direct_gradient(t)
            err = float(torch.linalg.vector_norm(grad.cpu() - direct)
                        / max(float(torch.linalg.vector_norm(direct)), 1e-300))
            self.max_rel_error = err if self.max_rel_error is None else max(self.max_rel_error, err)
            out["rel_error"] = err
        self.timings.check += time.perf_counter() - tc
        ts = time.perf_counter()
        self.models[m].set_gradient(grad, 1.0 / tr.batch_size)
        self.optimizers[m].step()
        self.updates[m] += 1
        self.timings.step += time.perf_counter() - ts
        for d in (self.jobs_ctx, self.job_dtype):
            d.pop(t, None)
        self.decoded += 1
        return out

    def _direct_gradient(self, t: int):
        """Job t's full gradient computed here in one pass (check_decode: reads the batch on the
        coordinator, which a normal run never does)."""
        import torch

        from gcode.train.compute import TaskComputer
        if self._local is None:
            self._local = TaskComputer(self.spec.workload, "cpu")
        tr = self.cfg.train
        self._local.model.load(self.job_params(t))
        idx = job_indices(tr.seed, t, tr.batch_size, self.spec.num_samples)
        direct = torch.empty(self.spec.num_params, dtype=torch.float64)
        self._local.coded_gradient([idx], [1.0], direct)
        return direct

    def _evaluate(self, r: int) -> list[dict]:
        """Held-out loss (and accuracy) of every model, every ``train.eval_every`` rounds."""
        from gcode.train.compute import evaluate
        every = self.cfg.train.eval_every
        if self.eval_dataset is None or not every or (r + 1) % every:
            return []
        rows = [{"round": r, "model": m, "updates": self.updates[m],
                 **evaluate(model.module, self.spec.workload, self.eval_dataset, model.device)}
                for m, model in enumerate(self.models)]
        self.evals += rows
        return rows

    def final_evaluation(self) -> list[dict] | None:
        """Every model's held-out metrics at the end of the run (None without an eval set)."""
        from gcode.train.compute import evaluate
        if self.eval_dataset is None:
            return None
        return [{"model": m, "updates": self.updates[m],
                 **evaluate(model.module, self.spec.workload, self.eval_dataset, model.device)}
                for m, model in enumerate(self.models)]

    def _checkpoint_hint(self) -> str:
        saved = self.checkpointer.written if self.checkpointer is not None else []
        return (f"; the last checkpoint is {saved[-1]} (gcode train --resume "
                f"{self.checkpointer.root} continues from it)" if saved else "")

    def _observe(self, r: int, info: dict) -> None:
        """Tell the policy the round's per-worker times (NaN: no result by the round's end),
        the censored view the simulator gives it too."""
        times = np.full(self.n, np.nan)
        for w, at in info["arrival_s"].items():
            times[w] = at
        if self.auto_slope and self.slope_samples and hasattr(self.policy, "load_slope"):
            self.policy.load_slope = float(np.median(self.slope_samples[-8 * self.n:]))
        if np.isfinite(times).any():
            self.policy.observe(r, times, self.scheme.round_load(r), info["wait_s"])

    def _record(self, r: int, plan, end: End, info: dict, duration: float, jobs_done: list,
                wall: float) -> dict:
        stragglers = np.flatnonzero(~end.arrived).tolist()
        record = {
            "round": r, "rounds": self.scheme.total_rounds, "duration_s": duration,
            "wall_time_s": wall, "wait_s": info["wait_s"],
            "cut_s": end.cut if math.isfinite(end.cut) else None, "fell_back": end.fell_back,
            "stragglers": stragglers, "failures": info["failures"],
            "arrival_s": info["arrival_s"], "compute_s": info["compute_s"],
            "sleep_s": info["sleep_s"], "decoded": jobs_done, "decoded_jobs": self.decoded,
            "jobs": self.scheme.jobs, "waits": self.waits, "loss": self.last_loss,
            "late_used": self.late_used, "load": self.scheme.round_load(r),
        }
        if "fallback_stragglers" in info:
            record["fallback_stragglers"] = info["fallback_stragglers"]
        if info.get("evals"):
            record["evals"] = info["evals"]
        self.writer.write(record)
        if self.recorder is not None:
            self._to_recorder(r, plan, end, info, duration, jobs_done, wall)
        if self.progress is not None:
            self.progress(record)
        return record

    def _to_recorder(self, r, plan, end, info, duration, jobs_done, wall) -> None:
        from gcode.telemetry.messages import round_record
        arrival = np.full(self.n, np.nan)
        for w, at in info["arrival_s"].items():
            arrival[w] = at
        errors = [j["rel_error"] for j in jobs_done if "rel_error" in j]
        losses = {j["model"]: (j["job"], j["loss"]) for j in jobs_done if "loss" in j}
        switches = list(getattr(self.scheme, "switches", ()))
        new_switches, self._switches_seen = switches[self._switches_seen:], len(switches)
        self.recorder.round(round_record(
            round=r, plans=plan, arrival_s=arrival, stragglers=~end.arrived,
            fell_back=end.fell_back, duration_s=duration, decoded_jobs=[j["job"] for j in jobs_done],
            losses=losses or None, wall_time_s=wall,
            deadline_s=end.cut if math.isfinite(end.cut) else None,
            max_decode_rel_error=max(errors) if errors else None,
            compute_s=info["compute_s"], injected_sleep_s=info["sleep_s"],
            failures={f["worker"]: f["reason"] for f in info["failures"]
                      if f["round"] == r and not end.arrived[f["worker"]]},
            load=self.scheme.round_load(r), switches=new_switches, evals=info.get("evals", ())))

    def _stop_requested(self) -> bool:
        """A stop asked through the live monitor ends the run before the next round."""
        if self.recorder is not None and self.recorder.stop_requested and not self.stopped:
            self.stopped = True
            self.stop_reason = getattr(self.recorder, "stop_reason", "") or "stop requested"
        return self.stopped

    def _checkpoint(self, r: int, start: float) -> None:
        tc = time.perf_counter()
        self.checkpointer.save(self, r, self.runtime_before + (tc - start))
        self.timings.checkpoint += time.perf_counter() - tc

    def run(self) -> float:
        """Run every round from ``start_round`` (0, or a resumed checkpoint's round); returns the
        wall-clock seconds of this session's training loop.

        With a checkpointer, the state at the boundary before round r (after absorbing the late
        results that are ready) is written when r is a multiple of ``checkpoint.every``, and when
        a stop request ends the run."""
        self._switches_seen = len(getattr(self.scheme, "switches", ()))  # announced before a resume
        start = time.perf_counter()
        r = self.start_round
        while r < self.scheme.total_rounds:
            if self._stop_requested():
                if self.checkpointer is not None:
                    self._absorb_late(r)
                    self._checkpoint(r, start)
                break
            round_start = time.perf_counter()
            n_fail = len(self.failures)
            tp = time.perf_counter()
            self._absorb_late(r)
            if self.checkpointer is not None and self.checkpointer.due(r, self.start_round):
                self.timings.plan += time.perf_counter() - tp
                self._checkpoint(r, start)
                tp = time.perf_counter()
            plan = self.scheme.plan(r)
            ti = time.perf_counter()
            self.timings.plan += ti - tp
            if self.scheme.job_exists(r) and r not in self.jobs_ctx:
                self._issue(r)
            self.timings.issue += time.perf_counter() - ti
            info: dict = {"arrival_s": {}, "compute_s": {}, "sleep_s": {}}
            skipped = not any(plan)  # a tail round with no task: no dispatch, zero duration
            if skipped:
                end = End(np.ones(self.n, dtype=bool), False, math.inf)
                info["wait_s"] = 0.0
            else:
                td = time.perf_counter()
                pending = {self._dispatch(r, w, plan[w], 0): w for w in range(self.n)}
                t0 = time.perf_counter()
                self.timings.dispatch += t0 - td
                end = self._wait_round(r, plan, pending, t0, info)
                wait_end = time.perf_counter()
                info["wait_s"] = wait_end - t0
                self.timings.wait += wait_end - t0
            tdec = time.perf_counter()
            self.scheme.record(r, end.arrived)
            self._observe(r, info)
            self.timings.decode += time.perf_counter() - tdec
            self.waits += end.fell_back
            self.stragglers_total += int((~end.arrived).sum())
            T = self.T
            jobs_done = [self._finish_job(t) for t in range(max(0, r - T), r + 1)
                         if self.scheme.decodable(t)]
            for t in range(max(0, r - T), r + 1):
                if (self.scheme.job_exists(t) and self.scheme.decode_deadline(t) == r
                        and not self.scheme.is_decoded(t)):
                    raise DecodeError(f"{self.scheme.name}: job {t} not decodable at its deadline "
                                      f"round {r}; the recorded stragglers broke the scheme's "
                                      f"guarantee")
            self.decoder.forget_before(r - T)
            if info["compute_s"]:
                self.round_compute_s += float(np.mean(list(info["compute_s"].values())))
            info["evals"] = self._evaluate(r)
            oldest = min([item[1] for item in self.late] + [r + 1])
            for key in [k for k in self._call_dtype if k[0] < oldest]:
                del self._call_dtype[key]
            duration = 0.0 if skipped else time.perf_counter() - round_start
            self.durations.append(duration)
            tl = time.perf_counter()
            info["failures"] = self.failures[n_fail:]
            self._record(r, plan, end, info, duration, jobs_done,
                         self.runtime_before + time.perf_counter() - start)
            self.timings.log += time.perf_counter() - tl
            r += 1
        self.rounds_run = r
        return time.perf_counter() - start
