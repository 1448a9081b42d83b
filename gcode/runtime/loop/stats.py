"""What a run counts and which session of it this is: :class:`RunStats` (the counters and
per-phase timings, the checkpoint's ``coordinator`` section) and :class:`Session` (the run id,
where this session started, its checkpoints: the checkpoint's ``run`` section). Every loop part
that counts writes here; the metrics, the checkpoint and the diagnostics read here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timings:
    """Coordinator seconds per phase, summed over rounds."""

    plan: float = 0.0       # late-result absorption and plan(r)
    issue: float = 0.0      # a new job's parameters shipped (transfer out)
    dispatch: float = 0.0   # the calls
    wait: float = 0.0       # dispatch end -> round decision (includes 'fetch' and 'fold')
    fetch: float = 0.0      # fetch + validation of arrived results (transfer in; inside 'wait')
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


#: counters saved in a checkpoint, in the order they are written
_COUNTERS = ("waits", "decoded", "late_used", "late_dropped", "retries", "pipelined",
             "stragglers_total", "max_rel_error", "last_loss")
_SERIES = ("compute_s", "response_s", "slope_samples", "durations")


@dataclass
class RunStats:
    """A run's counters. Those up to ``timings`` carry over a resume (:meth:`state_dict`); the
    rest describe this session only."""

    models: int = 1
    waits: int = 0                # rounds that fell back
    decoded: int = 0
    late_used: int = 0
    late_dropped: int = 0         # straggler calls in flight when a checkpoint was resumed
    retries: int = 0
    pipelined: int = 0            # rounds dispatched before the previous round's decodes
    stragglers_total: int = 0
    max_rel_error: float | None = None
    last_loss: float | None = None
    updates: list[int] = field(default_factory=list)       # optimizer steps per model
    model_loss: dict = field(default_factory=dict)  # model -> mean batch loss of its last job
    evals: list = field(default_factory=list)      # {"round", "model", "loss"[, "accuracy"]}
    failures: list = field(default_factory=list)
    restarts: dict = field(default_factory=dict)   # worker -> restarts seen (a new pid)
    compute_s: list = field(default_factory=list)
    response_s: list = field(default_factory=list)
    slope_samples: list = field(default_factory=list)
    durations: list = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    # ---- this session only
    pids: dict = field(default_factory=dict)        # worker -> pid of its last result
    peak_rss_mb: dict = field(default_factory=dict)  # worker -> peak resident memory reported
    round_compute_s: float = 0.0  # Σ over rounds of the arrived workers' mean compute time
    read_ahead: int = 0           # tasks whose batch a worker had read ahead (cluster.prefetch)
    dispatched_at_arrival: int = 0  # tasks sent at the worker's previous arrival
    rounds_run: int = 0
    coordinator_bytes: int = 0    # calls, job data and results through the coordinator's link

    def __post_init__(self):
        self.updates = self.updates or [0] * self.models

    def note_pid(self, w: int, pid: int | None) -> None:
        """Worker w answered from process ``pid``: a new pid is a restart."""
        if pid is None:
            return
        if w in self.pids and self.pids[w] != pid:
            self.restarts[w] = self.restarts.get(w, 0) + 1
        self.pids[w] = pid

    def state_dict(self) -> dict:
        """The checkpoint's ``coordinator`` section (its keys are part of the on-disk format)."""
        return {**{k: getattr(self, k) for k in _COUNTERS},
                "updates": list(self.updates),
                "model_loss": {str(m): v for m, v in self.model_loss.items()},
                "evals": list(self.evals), "failures": list(self.failures),
                "restarts": dict(self.restarts),
                **{k: list(getattr(self, k)) for k in _SERIES},
                "timings": dict(self.timings.__dict__)}

    def load_state_dict(self, c: dict) -> None:
        for key in _COUNTERS:
            setattr(self, key, c.get(key, 0) if key == "pipelined" else c[key])  # pipelined: v1
        self.pipelined = int(self.pipelined)
        self.updates = [int(u) for u in c["updates"]]
        self.model_loss = {int(m): float(v) for m, v in c["model_loss"].items()}
        self.evals = list(c["evals"])
        self.failures = list(c["failures"])
        self.restarts = {int(k): int(v) for k, v in c["restarts"].items()}
        for key in _SERIES:
            setattr(self, key, [float(v) for v in c[key]])
        for key, value in c["timings"].items():
            if hasattr(self.timings, key):
                setattr(self.timings, key, float(value))


@dataclass
class Session:
    """Which session of a run this is: its run id (kept across resumes), the round it starts
    at, the runtime of the sessions before it, the checkpoint it resumed from, and the
    checkpointer writing its own (optional)."""

    run_id: str = ""
    start_round: int = 0
    runtime_before: float = 0.0
    sessions: int = 1
    resumed_from: str | None = None
    checkpointer: Any = None      # gcode.runtime.checkpoint.Checkpointer
    stopped: bool = False
    stop_reason: str = ""

    def state_dict(self, runtime_s: float) -> dict:
        """The checkpoint's ``run`` section, less the run's sizes (the coordinator adds them)."""
        return {"run_id": self.run_id, "runtime_s": float(runtime_s), "sessions": self.sessions}

    def load_state_dict(self, run: dict, round_: int, path: str) -> None:
        """Resume after the session that wrote ``run`` at round ``round_`` (checkpoint ``path``)."""
        self.start_round = int(round_)
        self.runtime_before = float(run["runtime_s"])
        self.sessions = int(run["sessions"]) + 1
        self.resumed_from = str(path)

    @property
    def written(self) -> list[str]:
        return self.checkpointer.written if self.checkpointer is not None else []

    def resume_hint(self) -> str:
        """How to continue after a failure: from this session's last checkpoint, if any."""
        if not self.written:
            return ""
        from ...config import how_to_set
        return (f"; the last checkpoint is {self.written[-1]} "
                f"({how_to_set('checkpoint.resume', str(self.checkpointer.root))} continues from it)")

    def last_good_hint(self) -> str:
        """The last checkpoint written before a model diverged, or why there is none."""
        if self.written:
            return f"; the last good checkpoint is {self.written[-1]}"
        if self.resumed_from:
            return f"; this session resumed from {self.resumed_from}, no checkpoint since"
        return "; no checkpoint was written (set checkpoint.dir to keep one)"
