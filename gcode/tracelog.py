"""Per-worker round times from a live run's log: ``gcode trace from-log`` and ``gcode advise``.

Two logs hold them:
  * the coordinator's JSONL (``gcode train --log-jsonl``, ``gcode.fit``, ``bench versus
    --log-dir``): one object per round with ``arrival_s`` (each arrived worker's seconds from
    its own dispatch to its result), ``compute_s``, ``sleep_s`` (an injected delay), ``load``,
    ``wait_s`` (the round's end) and ``cut_replies`` (a cut worker's compute and sleep, logged
    when its late result came in);
  * the telemetry run log (``--run-log PREFIX``: PREFIX.pb or PREFIX.jsonl), whose RoundRecords
    hold per worker ``arrival_s``, ``compute_s`` and ``injected_sleep_s``.
A worker cut off at a round's end has no arrival. If its late reply was logged, its time is its
compute plus sleep plus the round's median overhead (arrival − compute − sleep of the others);
otherwise it is a straggler whose time is unknown: it is filled in at the median ratio of the
replied cut workers to their round's fastest (twice the fastest if none replied), never before
the round's end, and counted in ``filled``. Rounds in which nobody ran (a tail with no task)
are dropped.

The load model is fitted from the workers' compute times (:mod:`gcode.sim.load_fit`). A trace
holds base times of that model: zero-load times for the additive one (time − load·slope), the
times themselves for the proportional one, recorded at ``trace_load`` = the run's load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .sim.load_fit import LoadFit
from .sim.load_model import LoadModel


@dataclass
class LoggedRun:
    """What a run log says about per-worker times (rounds × n; NaN: unknown)."""

    times: np.ndarray
    compute: np.ndarray
    loads: np.ndarray      # (rounds,) normalized load of each round
    ends: np.ndarray       # (rounds,) seconds from dispatch to the round's end
    overhead_s: float      # median seconds per round the coordinator spent outside waiting
    filled: int            # cut workers whose time is a guess (no late reply)
    replied: int           # cut workers whose time came from their late reply
    source: str

    @property
    def n(self) -> int:
        return self.times.shape[1]

    def load_model(self, prior: LoadModel | None = None) -> LoadModel:
        """The load model the compute times support (proportional at the run's load, or
        additive with its slope); ``prior`` (default additive, slope 0) without compute times."""
        fit = LoadFit()
        for times, compute, load in zip(self.times, self.compute, self.loads):
            fit.add(times, compute, load)
        model = fit.model(prior or LoadModel("additive", 0.0))
        if model.kind == "proportional":
            return LoadModel("proportional", 0.0, float(np.median(self.loads)))
        return model

    def trace(self, model: LoadModel) -> np.ndarray:
        """Base times of ``model`` for every round (see the module docstring)."""
        base = np.stack([model.base(row, load) for row, load in zip(self.times, self.loads)])
        return np.maximum(base, 1e-9)


def read_run(path: str | Path) -> LoggedRun:
    """The per-worker times of a coordinator JSONL log or a telemetry run log (.pb/.jsonl)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such run log")
    if path.suffix == ".pb":
        return _from_run_log(path)
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    if not first.strip():
        raise ValueError(f"{path}: holds no rounds")
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        raise ValueError(f"{path}: line 1 is not JSON; expected a gcode run log") from None
    if isinstance(head, dict) and ("config" in head or "round" in head and isinstance(head["round"], dict)):
        return _from_run_log(path)
    return _from_coordinator_log(path)


def _from_coordinator_log(path: Path) -> LoggedRun:
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}: line {line_no} is not JSON") from None
            if not isinstance(row, dict) or "arrival_s" not in row:
                raise ValueError(f"{path}: line {line_no} has no arrival_s; expected the JSONL of "
                                 f"gcode train --log-jsonl or a telemetry run log")
            records.append(row)
    if not records:
        raise ValueError(f"{path}: holds no rounds")
    workers = {int(w) for rec in records for key in ("arrival_s", "compute_s") for w in rec.get(key) or {}}
    n = max(workers) + 1 if workers else 0
    rows = []
    replies = {}
    for rec in records:
        for reply in rec.get("cut_replies") or []:
            replies[(int(reply["round"]), int(reply["worker"]))] = reply
    for rec in records:
        if not rec["arrival_s"]:
            continue  # nobody ran (a tail round with no task)
        r = int(rec["round"])
        arrival = _per_worker(rec["arrival_s"], n)
        compute = _per_worker(rec.get("compute_s") or {}, n)
        sleep = _per_worker(rec.get("sleep_s") or {}, n)
        overhead = (np.nanmedian(arrival - compute - np.nan_to_num(sleep))
                    if np.isfinite(compute).any() else 0.0)
        replied = []
        for (rr, w), rep in replies.items():
            if rr == r and w < n and np.isnan(arrival[w]):
                compute[w] = float(rep.get("compute_s") or 0.0)
                arrival[w] = compute[w] + float(rep.get("sleep_s") or 0.0) + max(0.0, float(overhead))
                replied.append(w)
        end = float(rec.get("wait_s") or np.nanmax(arrival))
        rows.append((arrival, compute, float(rec.get("load") or np.nan), end,
                     float(rec.get("duration_s", end)) - float(rec.get("wait_s", end)), replied))
    return _assemble(rows, str(path))


def _from_run_log(path: Path) -> LoggedRun:
    from .telemetry.runlog import read_run_log
    log = read_run_log(path, allow_truncated=True)
    n, config_load = int(log.config.n), float(log.config.load)
    rows = []
    for rec in log.rounds:
        arrival, compute = np.full(n, np.nan), np.full(n, np.nan)
        for wr in rec.workers:
            if wr.HasField("arrival_s"):  # a simulator's log knows a straggler's time too
                arrival[wr.worker] = wr.arrival_s
            if wr.HasField("compute_s"):
                compute[wr.worker] = wr.compute_s
        if not np.isfinite(arrival).any():
            continue
        load = rec.load if rec.HasField("load") else config_load
        rows.append((arrival, np.where(np.isfinite(arrival), compute, np.nan), float(load),
                     float(rec.duration_s), 0.0, []))
    if not rows:
        raise ValueError(f"{path}: holds no rounds with arrivals")
    return _assemble(rows, str(path))


def _per_worker(mapping: dict, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    for w, value in mapping.items():
        if value is not None:
            out[int(w)] = float(value)
    return out


def _assemble(rows: list, source: str) -> LoggedRun:
    times = np.stack([r[0] for r in rows])
    compute = np.stack([r[1] for r in rows])
    loads = np.array([r[2] for r in rows])
    ends = np.array([r[3] for r in rows])
    if not np.isfinite(loads).all() or (loads <= 0).any():
        raise ValueError(f"{source}: a round has no load (> 0); cannot fit the load model")
    fastest = np.nanmin(times, axis=1)
    missing = np.isnan(times)
    # cut workers whose reply came in: their ratio to the fastest guesses the others'
    ratios = [times[i, w] / fastest[i] for i, row in enumerate(rows) for w in row[5]]
    ratio = float(np.median(ratios)) if ratios else 2.0
    guess = np.maximum(ratio * fastest, np.nextafter(ends, np.inf))
    times = np.where(missing, guess[:, None], times)
    return LoggedRun(times, compute, loads, ends, float(np.median([r[4] for r in rows])),
                     int(missing.sum()), len(ratios), source)


def write_trace(log: str | Path, output: str | Path) -> str:
    """``gcode trace from-log``: write ``log``'s trace to ``output``; returns what to tell."""
    from .stragglers.trace import save_trace
    run = read_run(log)
    model = run.load_model()
    trace = run.trace(model)
    kind = save_trace(trace, output, name=str(log))
    if model.kind == "additive":
        how = (f"additive, {model.slope:.4g} s per unit load; the trace holds zero-load times "
               f"(time - load x slope). Replay: gcode simulate --trace {output} "
               f"--load-slope {model.slope:.6g}")
    else:
        how = (f"proportional; the trace holds the times at the run's load {model.trace_load:g}. "
               f"Replay: gcode simulate --trace {output} --load-model proportional "
               f"--trace-load {model.trace_load:g}")
    guessed = (f"; {run.filled} cut workers' times guessed (no late reply), {run.replied} from late replies"
               if run.filled or run.replied else "")
    return (f"wrote {output} ({kind}): {trace.shape[0]} rounds x {trace.shape[1]} workers from "
            f"{run.source}{guessed}\nload model fitted from the compute times: {how}")
