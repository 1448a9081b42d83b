"""RunRecorder: one call per round feeds the run log and the live monitor alike.

Because both sinks receive the very same RoundRecord, the streamed records equal the run log.
A driver (simulator or live coordinator) needs four lines::

    recorder = RunRecorder(config, log_prefix=args.log, monitor=monitor)   # monitor may be None
    for r in ...:
        ...
        recorder.round(round_record(round=r, plans=plan, arrival_s=..., stragglers=..., ...))
        if recorder.stop_requested: break
    recorder.finish(final_losses=..., param_checksums=..., stopped=recorder.stop_requested)

``finish`` computes the totals (runtime, rounds, waits, decoded jobs) from the rounds it saw,
writes the RunSummary and ends the monitor's streams. The recorder does not own the monitor:
the caller closes it (after giving watchers a moment to drain, if it likes).
"""

from __future__ import annotations

import os
import time

from .messages import RoundRecord, RunConfig, RunSummary, run_summary
from .runlog import RunLogWriter


class RunRecorder:
    def __init__(self, config: RunConfig, *, log_prefix: str | os.PathLike | None = None,
                 monitor=None, jsonl: bool = True, fsync: bool = False):
        self.config = config
        self.monitor = monitor
        self.writer = RunLogWriter(log_prefix, config, jsonl=jsonl, fsync=fsync) \
            if log_prefix is not None else None
        if monitor is not None:
            monitor.set_config(config)
        self.rounds = 0
        self.waits = 0
        self.decoded_jobs = 0
        self.runtime_s = 0.0
        self.wall_time_s = 0.0
        self._max_error: float | None = None
        self._started = time.monotonic()
        self.summary: RunSummary | None = None

    @property
    def stop_requested(self) -> bool:
        return self.monitor is not None and self.monitor.stop_requested.is_set()

    @property
    def stop_reason(self) -> str:
        return self.monitor.stop_reason if self.monitor is not None else ""

    def elapsed(self) -> float:
        """Seconds since the recorder was created (a live run's wall_time_s)."""
        return time.monotonic() - self._started

    def round(self, record: RoundRecord) -> None:
        if self.summary is not None:
            raise RuntimeError("round() after finish()")
        if self.writer is not None:
            self.writer.write_round(record)
        if self.monitor is not None:
            self.monitor.publish(record)
        self.rounds += 1
        self.waits += int(record.fell_back)
        self.decoded_jobs += len(record.decoded_jobs)
        self.runtime_s += record.duration_s
        self.wall_time_s = record.wall_time_s
        if record.HasField("max_decode_rel_error"):
            self._max_error = max(self._max_error or 0.0, record.max_decode_rel_error)

    def finish(self, summary: RunSummary | None = None, **fields) -> RunSummary:
        """Write the summary (given, or built from the totals plus ``fields``: final_losses,
        param_checksums, max_decode_rel_error, stopped, stop_reason, wall_time_s, runtime_s)."""
        if summary is None:
            fields.setdefault("runtime_s", self.runtime_s)
            fields.setdefault("wall_time_s", self.wall_time_s)
            fields.setdefault("max_decode_rel_error", self._max_error)
            if fields.get("stopped") and not fields.get("stop_reason"):
                fields["stop_reason"] = self.stop_reason
            summary = run_summary(rounds=self.rounds, waits=self.waits,
                                  decoded_jobs=self.decoded_jobs, **fields)
        if self.writer is not None:
            self.writer.write_summary(summary)
        if self.monitor is not None:
            self.monitor.finish(summary)
        self.summary = summary
        return summary

    def close(self) -> None:
        """Close the log (without a summary if finish() was not called: an unfinished run)."""
        if self.writer is not None:
            self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
