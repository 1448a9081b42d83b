"""Text rendering of run logs (``gcode replay``) and of streamed rounds (``gcode watch``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .messages import (
    RoundRecord,
    RunConfig,
    RunSummary,
    describe_params,
    source_name,
    summary_from_rounds,
)


def _fmt(x: float, spec: str = ".4f") -> str:
    return format(x, spec) if math.isfinite(x) else str(x)


def config_lines(cfg: RunConfig) -> list[str]:
    lines = [f"{source_name(cfg.source)} run {cfg.run_id or '?'}: scheme {cfg.scheme} "
             f"({describe_params(cfg)}), n={cfg.n}, jobs={cfg.jobs or 'unbounded'}, "
             f"T={cfg.delay}, load={cfg.load:.5f}"]
    policy = f"policy {cfg.policy or '?'}"
    if cfg.policy in ("paper", "partial"):
        policy += f" (mu={cfg.mu:g})"
    if cfg.policy == "gap" and "gap" in cfg.extra:
        policy += f" (gap={cfg.extra['gap']})"
    if cfg.HasField("deadline_s"):
        policy += f" (deadline {cfg.deadline_s:g} s)"
    policy += f", load slope {cfg.load_slope:g} s, time scale {cfg.time_scale:g}"
    if cfg.HasField("trace"):
        policy += (f", trace {cfg.trace.name or '(unnamed)'} "
                   f"[{cfg.trace.rounds} x {cfg.trace.workers}]")
    lines.append(policy)
    if cfg.models or cfg.model or cfg.dataset:
        loss = cfg.extra.get("loss", "")
        lines.append(f"training: {cfg.models} model(s) {cfg.model or '?'} on "
                     f"{cfg.dataset or '?'}, optimizer {cfg.optimizer or '?'}"
                     f"{f', loss {loss}' if loss else ''}, seed {cfg.seed}, "
                     f"messages {cfg.message_dtype or '?'}")
    return lines


def summary_table(cfg: RunConfig, rounds: Sequence[RoundRecord],
                  summary: RunSummary | None) -> str:
    """The summary table of a finished (or, from its rounds, an unfinished) run."""
    lines = config_lines(cfg)
    note = ""
    if summary is None:
        summary = summary_from_rounds(rounds)
        note = (f"(no RunSummary: the run did not finish; totals computed from the "
                f"{len(rounds)} recorded rounds)")
    stragglers = sum(w.straggler for r in rounds for w in r.workers)
    params = describe_params(cfg)
    pw = max(24, len(params))
    header = (f"{'scheme':8} {'params':{pw}} {'rounds':>6} {'waits':>5} {'decoded':>7} "
              f"{'stragglers':>10} {'runtime s':>10}")
    lines += ["", header,
              f"{cfg.scheme:8} {params:{pw}} {summary.rounds:6d} {summary.waits:5d} "
              f"{summary.decoded_jobs:7d} {stragglers:10d} {_fmt(summary.runtime_s):>10}"]
    if abs(summary.wall_time_s - summary.runtime_s) > 1e-9:
        lines.append(f"wall time {_fmt(summary.wall_time_s, '.3f')} s")
    switches = [sw for r in rounds for sw in r.switches]
    if switches:
        lines.append("scheme switches: " + "; ".join(
            f"round {sw.round} -> {sw.scheme}({','.join(f'{k}={v}' for k, v in sorted(sw.params.items()))})"
            for sw in switches))
    if summary.HasField("max_decode_rel_error"):
        lines.append(f"max decode relative error {summary.max_decode_rel_error:.3e}")
    if summary.final_losses:
        lines.append("final batch losses: " + ", ".join(
            f"model {x.model}: {_fmt(x.loss, '.5f')}" for x in summary.final_losses))
    if summary.final_evals:
        lines.append("held-out: " + ", ".join(
            f"model {x.model}: loss {_fmt(x.loss, '.5f')}"
            + (f" accuracy {x.accuracy:.4f}" if x.HasField("accuracy") else "")
            for x in summary.final_evals))
    for c in summary.param_checksums:
        lines.append(f"model {c.model} parameters {c.algorithm} {c.value}")
    if summary.stopped:
        lines.append(f"stopped early on request: {summary.stop_reason or '(no reason given)'}")
    if note:
        lines.append(note)
    return "\n".join(lines)


def round_lines(rounds: Sequence[RoundRecord]) -> str:
    out = [f"{'round':>5} {'duration s':>10} {'wall s':>9} {'stragglers':>10} {'fell back':>9} "
           f"decoded"]
    for r in rounds:
        strag = sum(w.straggler for w in r.workers)
        out.append(f"{r.round:5d} {_fmt(r.duration_s):>10} {_fmt(r.wall_time_s, '.3f'):>9} "
                   f"{strag:10d} {'yes' if r.fell_back else '':>9} "
                   f"{','.join(map(str, r.decoded_jobs)) or '-'}")
    return "\n".join(out)


def watch_line(rec: RoundRecord, *, waits: int, decoded: int, planned: int = 0,
               losses: dict | None = None) -> str:
    """One status line of ``gcode watch``'s terminal view."""
    strag = [w.worker for w in rec.workers if w.straggler]
    shown = ",".join(map(str, strag[:8])) + (",..." if len(strag) > 8 else "")
    total = f"/{planned - 1}" if planned else ""
    line = (f"round {rec.round}{total}  {rec.duration_s:7.3f} s  stragglers {len(strag)}"
            f"{' [' + shown + ']' if strag else ''}  waits {waits}"
            f"{' (fell back)' if rec.fell_back else ''}  decoded {decoded}  "
            f"t={rec.wall_time_s:.2f} s")
    if losses:
        line += "  loss " + " ".join(f"m{m}={_fmt(v, '.4f')}" for m, v in sorted(losses.items()))
    return line
