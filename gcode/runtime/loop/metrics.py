"""What a live run reports: the metrics dict that ``gcode train --json`` prints, built from the
coordinator's counters and timings once the rounds are over."""

from __future__ import annotations

import numpy as np

from ..data import message_dtype

APPROX_DELAYED = ("delayed-gradient SGD: one model; the gradient of job t (computed on the "
                  "parameters at round t) is applied when decoded, up to T rounds late")
APPROX_IGNORE = "ignore-stragglers: rescaled partial sums, a biased gradient estimate"


def real_load(scheme, batch_size: int, block: int = 0) -> dict:
    """The per-worker load in whole samples (chunks balanced per group, whole blocks with
    ``exact_blocks``), next to ``load``: ``real_load`` is the busiest worker's steady-state
    samples per round over the batch size (for ``auto``, of its last scheme)."""
    from gcode.codes import worker_samples
    samples = worker_samples(scheme, batch_size, max(1, block))
    return {"real_load": int(samples.max()) / batch_size,
            "worker_samples": {"min": int(samples.min()), "max": int(samples.max())}}



def steps_per_model(coord) -> int:
    """The optimizer steps of the least-trained model (each model's: ``updates_per_model``)."""
    return min(coord.stats.updates, default=0)


def coordinator_bytes_per_round(coord) -> float:
    """Bytes through the coordinator's link per round of this session: calls, job parameters
    and results on the star plane; calls, coded losses and decode coefficients on the
    collective plane."""
    rounds = coord.stats.rounds_run - coord.session.start_round
    return coord.stats.coordinator_bytes / max(rounds, 1)


def run_metrics(cfg, coord, scheme, policy, pool, M, d, runtime_s, setup_s, session_s) -> dict:
    """The metrics dict of a finished live run (see :func:`gcode.runtime.run.execute`)."""
    tr, n = cfg.train, cfg.cluster.workers
    approximate = tr.mode == "delayed" or not scheme.exact
    notes = [APPROX_DELAYED] if tr.mode == "delayed" else []
    if not scheme.exact:
        notes.append(APPROX_IGNORE)
    stats, session = coord.stats, coord.session
    rounds = stats.rounds_run
    t = stats.timings
    per_round = {k: v / max(rounds, 1) for k, v in t.__dict__.items()}
    resp = float(np.mean(stats.response_s)) if stats.response_s else None
    info = pool.info if pool is not None else []
    options = pool.options if pool is not None else {}
    out = {
        "scheme": scheme.name, "params": scheme.params, "n": n, "jobs": scheme.jobs,
        "policy": cfg.policy_name, "mu": cfg.policy.mu,
        **({"gap": cfg.policy.gap} if cfg.policy_name == "gap" else {}),
        "mode": tr.mode, "models": M, "steps_per_model": steps_per_model(coord),
        "approximate": approximate, "approximation": "; ".join(notes) or None,
        "load": scheme.load, "delay_T": scheme.delay,
        **real_load(scheme, tr.batch_size, tr.exact_blocks),
        "message_dtype": message_dtype(scheme, tr.exact_blocks).name,
        "exact_blocks": tr.exact_blocks, "decode_checks": scheme.decode_checks,
        "num_params": d, "batch_size": tr.batch_size,
        "runtime_s": runtime_s, "setup_s": setup_s, "rounds": rounds, "waits": stats.waits,
        "decoded_jobs": stats.decoded, "updates_per_model": stats.updates,
        "evals": stats.evals, "max_decode_rel_error": stats.max_rel_error,
        "stopped": session.stopped, "stop_reason": session.stop_reason or None,
        "stragglers": stats.stragglers_total, "late_results_used": stats.late_used,
        "failures": stats.failures, "retries": stats.retries,
        "restarts": {str(k): v for k, v in sorted(stats.restarts.items())},
        "nodes": len({info[i].get("node") for i in range(n)}) if info else None,
        "node_ips": sorted({info[i].get("ip") for i in range(n)}) if info else None,
        "worker_cpus": options.get("num_cpus"), "worker_gpus": options.get("num_gpus"),
        "worker_peak_rss_mb": max(stats.peak_rss_mb.values(), default=None),
        "prefetch": cfg.cluster.reads_ahead, "read_ahead_tasks": stats.read_ahead,
        "compute_s_mean": float(np.mean(stats.compute_s)) if stats.compute_s else None,
        "response_s_mean": resp,
        "load_slope_s": (resp / scheme.load) if resp is not None and scheme.load > 0 else None,
        "overhead_s_per_round": t.overhead() / max(rounds, 1),
        "exposed_overhead_s_per_round": t.exposed() / max(rounds, 1),
        "pipelined_rounds": stats.pipelined,
        "dispatch": tr.dispatch, "dispatched_at_arrival": stats.dispatched_at_arrival,
        "compute_s_per_round": stats.round_compute_s / max(rounds, 1),
        "timings_s_per_round": per_round,
        "decode_streamed": getattr(coord.reducer, "streamed", None),
        "decode_fallbacks": getattr(coord.reducer, "fallbacks", None),
        "durations_s": stats.durations,
        "injected": (cfg.inject.trace or cfg.inject.model),
        "time_scale": cfg.inject.time_scale, "seed": tr.seed,
        "checkpoints": list(session.written),
        "checkpoint": session.written[-1] if session.written else None,
        "resumed_from": session.resumed_from, "sessions": session.sessions,
        "session_runtime_s": session_s, "late_results_dropped": stats.late_dropped,
        "data_plane": cfg.cluster.data_plane, "zero": cfg.cluster.zero,
        "coordinator_bytes_per_round": coordinator_bytes_per_round(coord),
    }
    phases = getattr(coord.transport, "phases_per_decode", None)
    if phases is not None:  # the collective plane: where a decode's seconds go
        out["plane_s_per_decode"] = phases()
    if cfg.scheme.name == "auto":
        out["switches"] = list(getattr(scheme, "switches", []))
        out["auto_load_slope_s"] = getattr(policy, "load_slope", None)
    return out
