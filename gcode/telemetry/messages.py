"""The gcode.v1 protobuf messages, and constructors that build them from plain Python values.

The generated classes are re-exported here, so other code imports
``from gcode.telemetry.messages import RoundRecord`` and never the generated modules directly.
The constructors validate shapes and turn NaN into "absent", so the messages never carry NaN.
Conversions back to plain values live in :mod:`gcode.telemetry.convert`, re-exported here.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._proto.gcode.v1 import monitor_pb2, run_pb2
from .convert import (
    ROUND_FIELDS,
    TRACE_DTYPE,
    arrays,
    describe_params,
    entry_to_dict,
    params_from_proto,
    params_to_proto,
    round_to_dict,
    to_dict,
    trace_from_proto,
    trace_to_proto,
)

Source = run_pb2.Source
SchemeSwitch = run_pb2.SchemeSwitch
Trace = run_pb2.Trace
RunConfig = run_pb2.RunConfig
Task = run_pb2.Task
WorkerRound = run_pb2.WorkerRound
ModelLoss = run_pb2.ModelLoss
ModelEval = run_pb2.ModelEval
RoundRecord = run_pb2.RoundRecord
ParamChecksum = run_pb2.ParamChecksum
RunSummary = run_pb2.RunSummary
LogEntry = run_pb2.LogEntry
WatchRequest = monitor_pb2.WatchRequest
StatusRequest = monitor_pb2.StatusRequest
Status = monitor_pb2.Status
StopRequest = monitor_pb2.StopRequest
StopReply = monitor_pb2.StopReply

SOURCES = {"sim": run_pb2.SOURCE_SIM, "live": run_pb2.SOURCE_LIVE}


def source_name(value: int) -> str:
    return {v: k for k, v in SOURCES.items()}.get(value, "unspecified")


# ---- constructors --------------------------------------------------------------------------
def new_run_id() -> str:
    return secrets.token_hex(8)


def run_config(*, source: str, scheme: str, n: int, params: Mapping[str, Any] | None = None,
               jobs: int | None = None, delay: int = 0, load: float = 0.0,
               rounds_planned: int | None = None, policy: str = "", mu: float = 0.0,
               deadline_s: float | None = None, load_slope: float = 0.0,
               time_scale: float = 1.0, models: int = 0, seed: int = 0, model: str = "",
               dataset: str = "", optimizer: str = "", message_dtype: str = "",
               trace: np.ndarray | run_pb2.Trace | None = None, trace_name: str = "",
               run_id: str | None = None, started_unix_s: float | None = None,
               extra: Mapping[str, Any] | None = None) -> run_pb2.RunConfig:
    """A RunConfig from plain values. ``source`` is "sim" or "live"."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if rounds_planned is None:
        rounds_planned = 0 if not jobs else int(jobs) + int(delay)
    cfg = run_pb2.RunConfig(
        run_id=run_id or new_run_id(), source=SOURCES[source], scheme=scheme,
        params=params_to_proto(params or {}), n=int(n), jobs=int(jobs or 0), delay=int(delay),
        load=float(load), rounds_planned=int(rounds_planned), policy=policy, mu=float(mu),
        load_slope=float(load_slope), time_scale=float(time_scale), models=int(models),
        seed=int(seed), model=model, dataset=dataset, optimizer=optimizer,
        message_dtype=str(message_dtype),
        started_unix_s=time.time() if started_unix_s is None else float(started_unix_s),
        gcode_version=_gcode_version(), extra=params_to_proto(extra or {}))
    if deadline_s is not None and math.isfinite(deadline_s):
        cfg.deadline_s = float(deadline_s)
    if trace is not None:
        cfg.trace.CopyFrom(trace if isinstance(trace, run_pb2.Trace)
                           else trace_to_proto(trace, trace_name))
    return cfg


def _gcode_version() -> str:
    try:
        from importlib.metadata import version
        return version("gcode")
    except Exception:  # noqa: BLE001 - not installed: a source checkout
        return "unknown"


def _mask(values, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=bool)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one per worker), got {arr.shape}")
    return arr


def _losses(losses) -> list[run_pb2.ModelLoss]:
    """{model: loss}, {model: (job, loss)}, or an iterable of (model, loss) / (model, job, loss)."""
    if losses is None:
        return []
    items = losses.items() if isinstance(losses, Mapping) else losses
    out = []
    for item in items:
        if isinstance(item, run_pb2.ModelLoss):
            out.append(item)
            continue
        model, value = item[0], item[1:] if len(item) > 2 else item[1]
        job = None
        if isinstance(value, (tuple, list)):
            job, value = value
        loss = float(value)
        msg = run_pb2.ModelLoss(model=int(model), loss=loss)
        if job is not None:
            msg.job = int(job)
        out.append(msg)
    return out


def _per_worker(values, n: int, name: str) -> np.ndarray | None:
    """Per-worker seconds as an (n,) float array, NaN where unknown; from an array or a dict."""
    if values is None:
        return None
    if isinstance(values, Mapping):
        arr = np.full(n, np.nan)
        for w, v in values.items():
            if not 0 <= int(w) < n:
                raise ValueError(f"{name} names worker {w}, outside 0..{n - 1}")
            arr[int(w)] = float(v)
        return arr
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one per worker), got {arr.shape}")
    return arr


def round_record(*, round: int, plans: Sequence[Sequence[Any]],  # the proto's name
                 arrival_s: Sequence[float] | np.ndarray | None = None,
                 stragglers: Sequence[bool] | np.ndarray | None = None, fell_back: bool = False,
                 duration_s: float, decoded_jobs: Iterable[int] = (), losses=None,
                 wall_time_s: float = 0.0, deadline_s: float | None = None,
                 late: Sequence[bool] | np.ndarray | None = None,
                 max_decode_rel_error: float | None = None,
                 compute_s: Sequence[float] | np.ndarray | Mapping[int, float] | None = None,
                 injected_sleep_s: Sequence[float] | np.ndarray | Mapping[int, float] | None = None,
                 failures: Mapping[int, str] | None = None, load: float | None = None,
                 switches: Iterable[Mapping[str, Any]] = (),
                 evals: Iterable[Mapping[str, Any]] = ()) -> run_pb2.RoundRecord:
    """A RoundRecord from a scheme's plan and the round's outcome.

    ``plans[w]`` lists worker w's mini-tasks (objects with .job .slot .chunks .coefficients,
    e.g. gcode.codes.MiniTask). ``arrival_s[w]`` is NaN when no result arrived. ``late``
    defaults to "arrived after ``deadline_s`` or never" when a deadline is given, else to
    ``stragglers``. ``compute_s`` / ``injected_sleep_s`` (per worker: arrays with NaN for
    unknown, or {worker: seconds}) and ``failures`` ({worker: reason}) are for live runs.
    ``switches``: scheme switches decided this round, as {"round", "scheme", "params"} dicts
    (what gcode.codes.switching.SwitchingScheme.switches holds). ``evals``: held-out metrics
    as {"model", "updates", "loss"[, "accuracy"]} dicts.
    """
    n = len(plans)
    if n < 1:
        raise ValueError("plans must list every worker's tasks (got an empty list)")
    strag = np.zeros(n, bool) if stragglers is None else _mask(stragglers, n, "stragglers")
    arrivals = None
    if arrival_s is not None:
        arrivals = np.asarray(arrival_s, dtype=np.float64)
        if arrivals.shape != (n,):
            raise ValueError(f"arrival_s must have shape ({n},) (one per worker), got {arrivals.shape}")
    if deadline_s is not None and not math.isfinite(deadline_s):
        deadline_s = None
    if late is not None:
        late_mask = _mask(late, n, "late")
    elif deadline_s is not None and arrivals is not None:
        late_mask = ~(arrivals <= deadline_s)  # NaN (never arrived) counts as late
    else:
        late_mask = strag
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s}")
    rec = run_pb2.RoundRecord(round=int(round), fell_back=bool(fell_back),
                              duration_s=float(duration_s), wall_time_s=float(wall_time_s),
                              decoded_jobs=[int(t) for t in decoded_jobs])
    if deadline_s is not None:
        rec.deadline_s = float(deadline_s)
    if max_decode_rel_error is not None:
        rec.max_decode_rel_error = float(max_decode_rel_error)
    rec.losses.extend(_losses(losses))
    if load is not None:
        rec.load = float(load)
    rec.evals.extend(model_evals(evals))
    for sw in switches:
        rec.switches.add(round=int(sw["round"]), scheme=str(sw["scheme"]),
                         params=params_to_proto(sw.get("params") or {}))
    compute = _per_worker(compute_s, n, "compute_s")
    sleep = _per_worker(injected_sleep_s, n, "injected_sleep_s")
    failures = dict(failures or {})
    if any(not 0 <= int(w) < n for w in failures):
        raise ValueError(f"failures name workers outside 0..{n - 1}: {sorted(failures)}")
    for w, tasks in enumerate(plans):
        wr = rec.workers.add(worker=w, straggler=bool(strag[w]), late=bool(late_mask[w]),
                             failure=str(failures.get(w, "")))
        if arrivals is not None and math.isfinite(arrivals[w]):
            wr.arrival_s = float(arrivals[w])
        if compute is not None and math.isfinite(compute[w]):
            wr.compute_s = float(compute[w])
        if sleep is not None and math.isfinite(sleep[w]):
            wr.injected_sleep_s = float(sleep[w])
        for task in tasks:
            wr.tasks.add(job=int(task.job), slot=int(task.slot),
                         chunks=[int(c) for c in task.chunks],
                         coefficients=[float(c) for c in task.coefficients])
    return rec


def model_evals(evals: Iterable[Mapping[str, Any]]) -> list[run_pb2.ModelEval]:
    """ModelEval messages from {"model", "updates", "loss"[, "accuracy"]} dicts."""
    out = []
    for e in evals:
        msg = run_pb2.ModelEval(model=int(e["model"]), updates=int(e.get("updates", 0)),
                                loss=float(e["loss"]))
        if e.get("accuracy") is not None:
            msg.accuracy = float(e["accuracy"])
        out.append(msg)
    return out


def run_summary(*, runtime_s: float, rounds: int, waits: int, decoded_jobs: int,
                final_losses=None, param_checksums: Mapping[int, str] | None = None,
                checksum_algorithm: str = "sha256", max_decode_rel_error: float | None = None,
                wall_time_s: float | None = None, stopped: bool = False,
                stop_reason: str = "", final_evals=(), models: int = 0,
                steps_per_model: int = 0, data_plane: str = "",
                coordinator_bytes_per_round: float | None = None) -> run_pb2.RunSummary:
    """A RunSummary from plain values; ``final_losses`` as in :func:`round_record`'s losses;
    ``models`` and ``steps_per_model`` (the least-trained model's steps) 0 when not known;
    ``data_plane`` (star, collective) and ``coordinator_bytes_per_round`` for live runs."""
    s = run_pb2.RunSummary(runtime_s=float(runtime_s), rounds=int(rounds), waits=int(waits),
                           decoded_jobs=int(decoded_jobs),
                           wall_time_s=float(runtime_s if wall_time_s is None else wall_time_s),
                           stopped=bool(stopped), stop_reason=stop_reason, models=int(models),
                           steps_per_model=int(steps_per_model), data_plane=data_plane)
    if coordinator_bytes_per_round is not None:
        s.coordinator_bytes_per_round = float(coordinator_bytes_per_round)
    s.final_losses.extend(_losses(final_losses))
    s.final_evals.extend(model_evals(final_evals or ()))
    for model, value in sorted((param_checksums or {}).items()):
        s.param_checksums.add(model=int(model), algorithm=checksum_algorithm, value=str(value))
    if max_decode_rel_error is not None:
        s.max_decode_rel_error = float(max_decode_rel_error)
    return s


def summary_from_rounds(rounds: Sequence[run_pb2.RoundRecord]) -> run_pb2.RunSummary:
    """Totals recomputed from round records (for logs of runs that did not finish)."""
    last: dict[int, run_pb2.ModelLoss] = {}
    for rec in rounds:
        for loss in rec.losses:
            last[loss.model] = loss
    errors = [r.max_decode_rel_error for r in rounds if r.HasField("max_decode_rel_error")]
    return run_summary(runtime_s=sum(r.duration_s for r in rounds), rounds=len(rounds),
                       waits=sum(r.fell_back for r in rounds),
                       decoded_jobs=sum(len(r.decoded_jobs) for r in rounds),
                       final_losses=[last[m] for m in sorted(last)],
                       max_decode_rel_error=max(errors) if errors else None,
                       wall_time_s=rounds[-1].wall_time_s if rounds else 0.0)


__all__ = [
    "ROUND_FIELDS", "SOURCES", "TRACE_DTYPE", "LogEntry", "ModelEval", "ModelLoss", "ParamChecksum",
    "RoundRecord", "RunConfig", "RunSummary", "SchemeSwitch", "Source", "Status", "StatusRequest",
    "StopReply", "StopRequest", "Task", "Trace", "WatchRequest", "WorkerRound", "arrays",
    "describe_params", "entry_to_dict", "model_evals", "new_run_id", "params_from_proto",
    "params_to_proto", "round_record", "round_to_dict", "run_config", "run_summary", "source_name",
    "summary_from_rounds", "to_dict", "trace_from_proto", "trace_to_proto",
]
