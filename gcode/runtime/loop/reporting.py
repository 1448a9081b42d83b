"""What the coordinator reports about each round: the policy's censored view of the times, the
JSONL record, the telemetry RoundRecord and the progress callback; and the stop a live monitor
may request."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ...sim.rounds import End
from .jsonl_log import JsonlWriter
from .stats import RunStats, Session


class Reporter:
    """Tells the policy each round's times and writes each round's record (JSONL ``writer``,
    telemetry ``recorder``, ``progress`` callback). ``auto_slope``: the tuner's load slope is
    measured live (scheme 'auto')."""

    def __init__(self, scheme, policy, stats: RunStats, session: Session, n: int,
                 writer: JsonlWriter, recorder=None, progress: Callable[[dict], None] | None = None,
                 auto_slope: bool = False, should_stop: Callable[[], str | None] | None = None):
        self.scheme, self.policy, self.stats, self.session, self.n = scheme, policy, stats, session, n
        self.writer, self.recorder, self.progress = writer, recorder, progress
        self.auto_slope = auto_slope
        self.should_stop = should_stop
        self.switches_seen = len(getattr(scheme, "switches", ()))  # announced before a resume

    def stop_requested(self) -> bool:
        """A stop asked through the live monitor, or by a callback (``should_stop()`` gives its
        reason), ends the run before the next round."""
        session = self.session
        if session.stopped:
            return True
        if self.recorder is not None and self.recorder.stop_requested:
            session.stopped = True
            session.stop_reason = getattr(self.recorder, "stop_reason", "") or "stop requested"
        elif self.should_stop is not None and (reason := self.should_stop()):
            session.stopped, session.stop_reason = True, reason
        return session.stopped

    def observe(self, r: int, info: dict) -> None:
        """Tell the policy the round's per-worker times (NaN: no result by the round's end),
        the censored view the simulator gives it too."""
        times = np.full(self.n, np.nan)
        for w, at in info["arrival_s"].items():
            times[w] = at
        samples = self.stats.slope_samples
        if self.auto_slope and samples and hasattr(self.policy, "load_slope"):
            self.policy.load_slope = float(np.median(samples[-8 * self.n:]))
        if np.isfinite(times).any():
            self.policy.observe(r, times, self.scheme.round_load(r), info["wait_s"])

    def record(self, r: int, plan, end: End, info: dict, duration: float, jobs_done: list,
               wall: float, cut_replies: list) -> dict:
        """Round r's record (its keys are a contract of the JSONL log), written everywhere."""
        stats = self.stats
        record = {
            "round": r, "rounds": self.scheme.total_rounds, "duration_s": duration,
            "wall_time_s": wall, "wait_s": info["wait_s"],
            "cut_s": end.cut if math.isfinite(end.cut) else None, "fell_back": end.fell_back,
            "stragglers": np.flatnonzero(~end.arrived).tolist(), "failures": info["failures"],
            "arrival_s": info["arrival_s"], "compute_s": info["compute_s"],
            "sleep_s": info["sleep_s"], "decoded": jobs_done, "decoded_jobs": stats.decoded,
            "jobs": self.scheme.jobs, "waits": stats.waits, "loss": stats.last_loss,
            "late_used": stats.late_used, "load": self.scheme.round_load(r),
            "next_started_early": info.get("next_started_early", False),
        }
        if "head_start_s" in info:  # workers sent this round's tasks at their last arrival
            record["head_start_s"] = info["head_start_s"]
        if cut_replies:  # workers cut in earlier rounds that had finished computing
            record["cut_replies"] = cut_replies
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
        new_switches, self.switches_seen = switches[self.switches_seen:], len(switches)
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
