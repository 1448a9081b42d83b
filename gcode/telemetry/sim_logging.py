"""Run logs (and optionally a live monitor) for the trace-driven simulator."""

from __future__ import annotations

import math
import os

import numpy as np

from ..codes import Scheme
from ..sim import Policy, SimResult, simulate
from ..sim.load_model import LoadModel
from .messages import RunConfig, round_record, run_config
from .recorder import RunRecorder


class _PlanCapture:
    """Delegates to a scheme and remembers the plan of each round (simulate calls plan(r)
    before record(r), and plan(r) cannot be asked again afterwards)."""

    def __init__(self, scheme: Scheme):
        self._scheme = scheme
        self.plans: dict[int, list] = {}

    def plan(self, r: int):
        plan = self._scheme.plan(r)
        self.plans[r] = plan
        return plan

    def __getattr__(self, name):
        return getattr(self._scheme, name)


def sim_config(scheme: Scheme, trace: np.ndarray, policy: Policy, load_slope: float | LoadModel,
               time_scale: float, trace_name: str = "", include_trace: bool = True,
               dispatch: str = "round") -> RunConfig:
    rounds = scheme.total_rounds
    loads = LoadModel.of(load_slope)
    extra = {} if loads.kind == "additive" else {
        "load_model": loads.kind, "trace_load": loads.trace_load if loads.trace_load else 1.0 / scheme.n}
    if policy.name == "gap":
        extra["gap"] = policy.gap
    if dispatch != "round":
        extra["dispatch"] = dispatch
    # every round of the trace (an adaptive scheme may run longer than first planned), but only
    # the first n workers' columns, which is all the simulator reads
    used = np.asarray(trace, dtype=np.float64)[:, :scheme.n]
    return run_config(
        source="sim", scheme=scheme.name, params=scheme.params, n=scheme.n, jobs=scheme.jobs,
        delay=scheme.delay, load=scheme.load, rounds_planned=rounds, policy=policy.name,
        mu=getattr(policy, "mu", 0.0), deadline_s=getattr(policy, "seconds", None),
        load_slope=loads.slope, time_scale=time_scale,
        message_dtype=str(scheme.message_dtype),
        trace=used if include_trace else None, trace_name=trace_name, extra=extra)


def simulate_with_log(scheme: Scheme, trace: np.ndarray, policy: Policy,
                      load_slope: float | LoadModel = 0.0, time_scale: float = 1.0,
                      log_prefix: str | os.PathLike | None = None, *, trace_name: str = "",
                      monitor=None, include_trace: bool = True, jsonl: bool = True,
                      progress=None, dispatch: str = "round") -> SimResult:
    """:func:`gcode.sim.simulate`, writing ``<log_prefix>.pb`` / ``.jsonl`` and/or publishing to
    a MonitorServer. Returns the simulator's own result. The config embeds the trace slice the
    simulation used (rounds x n), so the log alone can re-run it; ``include_trace=False`` omits
    it. wall_time_s in the records is simulated time (the sum of round durations so far).
    ``progress(1)`` is called after each round."""
    config = sim_config(scheme, trace, policy, load_slope, time_scale, trace_name, include_trace,
                        dispatch)
    capture = _PlanCapture(scheme)
    clock = [0.0]
    switches_seen = [len(getattr(scheme, "switches", ()))]

    with RunRecorder(config, log_prefix=log_prefix, monitor=monitor, jsonl=jsonl) as recorder:
        def on_round(r, times, outcome, newly):
            clock[0] += outcome.duration
            times = np.asarray(times, dtype=np.float64)
            deadline = policy.deadline(float(times.min()))
            switches = list(getattr(scheme, "switches", ()))
            new_switches, switches_seen[0] = switches[switches_seen[0]:], len(switches)
            round_load = getattr(scheme, "round_load", None)
            recorder.round(round_record(
                round=r, plans=capture.plans.pop(r), arrival_s=times,
                stragglers=~np.asarray(outcome.arrived, dtype=bool), fell_back=outcome.fell_back,
                duration_s=outcome.duration, decoded_jobs=newly, wall_time_s=clock[0],
                deadline_s=deadline if math.isfinite(deadline) else None,
                load=round_load(r) if round_load is not None else scheme.load,
                switches=new_switches))
            if progress is not None:
                progress(1)

        result = simulate(capture, trace, policy, load_slope, time_scale, on_round=on_round,
                          dispatch=dispatch)
        recorder.finish(runtime_s=result.runtime_s, wall_time_s=result.runtime_s)
    return result
