"""gcode.v1 messages to and from plain Python values: proto3-JSON dicts (a fast path for rounds),
traces as float64 matrices, scheme parameters as text, and per-round numpy views of records.

Readers of logs use these; :mod:`gcode.telemetry.messages` builds messages and re-exports them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf import json_format

from ._proto.gcode.v1 import run_pb2

TRACE_DTYPE = "float64"


# ---- JSON ----------------------------------------------------------------------------------
def to_dict(message) -> dict:
    """proto3 JSON as a dict, with the .proto field names and zero values printed."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _json_float(x: float):
    """proto3 JSON for a double: the number, or "NaN" / "Infinity" / "-Infinity"."""
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


#: the RoundRecord fields :func:`round_to_dict` knows; tests check this equals the schema's
ROUND_FIELDS = {"RoundRecord": ("round", "workers", "fell_back", "duration_s", "deadline_s",
                                "decoded_jobs", "losses", "wall_time_s", "max_decode_rel_error",
                                "load", "switches", "evals"),
                "WorkerRound": ("worker", "tasks", "arrival_s", "straggler", "late", "compute_s",
                                "injected_sleep_s", "failure"),
                "Task": ("job", "slot", "chunks", "coefficients"),
                "ModelLoss": ("model", "job", "loss"),
                "ModelEval": ("model", "updates", "loss", "accuracy")}


def round_to_dict(rec: run_pb2.RoundRecord) -> dict:
    """Same dict as ``to_dict(rec)``, about 10x faster (json_format is pure Python and costs
    ~40 ms for a 256-worker round). tests/telemetry/test_telemetry_log.py checks they agree."""
    f = _json_float
    out = {"round": rec.round, "workers": [
        {"worker": w.worker,
         "tasks": [{"job": t.job, "slot": t.slot, "chunks": list(t.chunks),
                    "coefficients": [f(c) for c in t.coefficients]} for t in w.tasks],
         **({"arrival_s": f(w.arrival_s)} if w.HasField("arrival_s") else {}),
         "straggler": w.straggler, "late": w.late,
         **({"compute_s": f(w.compute_s)} if w.HasField("compute_s") else {}),
         **({"injected_sleep_s": f(w.injected_sleep_s)} if w.HasField("injected_sleep_s")
            else {}),
         "failure": w.failure} for w in rec.workers],
        "fell_back": rec.fell_back, "duration_s": f(rec.duration_s)}
    if rec.HasField("deadline_s"):
        out["deadline_s"] = f(rec.deadline_s)
    out["decoded_jobs"] = list(rec.decoded_jobs)
    out["losses"] = [{"model": x.model, **({"job": x.job} if x.HasField("job") else {}),
                      "loss": f(x.loss)} for x in rec.losses]
    out["wall_time_s"] = f(rec.wall_time_s)
    if rec.HasField("max_decode_rel_error"):
        out["max_decode_rel_error"] = f(rec.max_decode_rel_error)
    if rec.HasField("load"):
        out["load"] = f(rec.load)
    out["switches"] = [to_dict(x) for x in rec.switches]  # rare: the slow path is fine
    out["evals"] = [to_dict(x) for x in rec.evals]
    return out


def entry_to_dict(entry: run_pb2.LogEntry) -> dict:
    """A LogEntry as its proto3-JSON dict (the fast path for rounds)."""
    if entry.WhichOneof("entry") == "round":
        return {"round": round_to_dict(entry.round)}
    return to_dict(entry)


# ---- traces --------------------------------------------------------------------------------
def trace_to_proto(times: np.ndarray, name: str = "") -> run_pb2.Trace:
    """A (rounds, workers) matrix of seconds as a Trace: little-endian float64 bytes + shape."""
    arr = np.ascontiguousarray(np.asarray(times, dtype="<f8"))
    if arr.ndim != 2:
        raise ValueError(f"a trace must be a 2-D (rounds, workers) array, got shape {arr.shape}")
    return run_pb2.Trace(name=name, rounds=arr.shape[0], workers=arr.shape[1], dtype=TRACE_DTYPE,
                         shape=list(arr.shape), times=arr.tobytes())


def trace_from_proto(trace: run_pb2.Trace) -> np.ndarray:
    """The (rounds, workers) float64 matrix of a Trace; ValueError when it is inconsistent."""
    if trace.dtype != TRACE_DTYPE:
        raise ValueError(f"trace dtype {trace.dtype!r} is not supported (only {TRACE_DTYPE!r})")
    shape = tuple(trace.shape)
    if len(shape) != 2 or shape != (trace.rounds, trace.workers):
        raise ValueError(f"trace shape {list(shape)} does not match rounds={trace.rounds}, "
                         f"workers={trace.workers}")
    if len(trace.times) != shape[0] * shape[1] * 8:
        raise ValueError(f"trace holds {len(trace.times)} bytes, shape {list(shape)} needs "
                         f"{shape[0] * shape[1] * 8}")
    return np.frombuffer(trace.times, dtype="<f8").reshape(shape).astype(np.float64)


# ---- scheme parameters ---------------------------------------------------------------------
def _param_text(value: Any) -> str:
    if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)  # e.g. a switching scheme's segments


def params_to_proto(params: Mapping[str, Any]) -> dict[str, str]:
    """Scheme parameters as text: scalars with str(), anything else as JSON."""
    return {str(k): _param_text(v) for k, v in params.items() if v is not None}


def _json_container(text: str):
    if not text.startswith(("[", "{")):
        raise ValueError(text)
    try:
        return json.loads(text)  # json.JSONDecodeError is a ValueError
    except RecursionError:  # nested past Python's limit: keep it as text
        raise ValueError(text[:20]) from None


def params_from_proto(params: Mapping[str, str]) -> dict[str, Any]:
    """Scheme parameters back as Python values: ints and floats where the text is one."""
    out: dict[str, Any] = {}
    for key in sorted(params):
        text = params[key]
        for kind in (int, float, _json_container):
            try:
                out[key] = kind(text)
                break
            except ValueError:
                continue
        else:
            out[key] = text
    return out


def arrays(rounds: Sequence[run_pb2.RoundRecord], n: int) -> dict[str, np.ndarray]:
    """Per-round numpy views of records: durations, wall times, straggler/late masks, arrivals."""
    R = len(rounds)
    out = {"round": np.array([r.round for r in rounds], dtype=np.int64),
           "duration_s": np.array([r.duration_s for r in rounds], dtype=np.float64),
           "wall_time_s": np.array([r.wall_time_s for r in rounds], dtype=np.float64),
           "fell_back": np.array([r.fell_back for r in rounds], dtype=bool),
           "straggler": np.zeros((R, n), dtype=bool), "late": np.zeros((R, n), dtype=bool),
           "arrival_s": np.full((R, n), np.nan)}
    for i, rec in enumerate(rounds):
        for wr in rec.workers:
            if wr.worker >= n:
                raise ValueError(f"round {rec.round}: worker {wr.worker} but the run has n={n}")
            out["straggler"][i, wr.worker] = wr.straggler
            out["late"][i, wr.worker] = wr.late
            if wr.HasField("arrival_s"):
                out["arrival_s"][i, wr.worker] = wr.arrival_s
    return out


def describe_params(cfg: run_pb2.RunConfig) -> str:
    return ",".join(f"{k}={v}" for k, v in params_from_proto(cfg.params).items()) or "-"
