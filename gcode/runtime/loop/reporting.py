"""What the coordinator reports about each round: the policy's censored view of the times, the
JSONL record, the telemetry RoundRecord, and the per-phase timings.

:class:`RoundReporting` is a mixin of :class:`gcode.runtime.loop.coordinator.Coordinator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...sim.rounds import End


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
    overlapped: float = 0.0  # the part of 'overhead' done while the next round's workers computed

    def overhead(self) -> float:
        """The coordinator's own work in a round: everything but waiting for workers."""
        return (self.plan + self.issue + self.dispatch + self.fetch + self.fold + self.decode
                + self.step + self.log)

    def exposed(self) -> float:
        """The overhead that workers waited for: all of it but what overlapped their compute."""
        return self.overhead() - self.overlapped



class RoundReporting:
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
            "next_started_early": info.get("next_started_early", False),
        }
        if "head_start_s" in info:  # workers sent this round's tasks at their last arrival
            record["head_start_s"] = info["head_start_s"]
        if self.cut_replies:  # workers cut in earlier rounds that had finished computing
            record["cut_replies"], self.cut_replies = self.cut_replies, []
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

