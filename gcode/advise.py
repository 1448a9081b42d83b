"""``gcode advise``: will coding help my cluster? A prediction from a run's measured times.

From a run log (:mod:`gcode.tracelog`), a trace, or a short uncoded probe run of the user's own
``gcode.fit`` functions (:func:`probe`), it recovers per-worker round times and the load model,
simulates every candidate of the auto scheme's grid as a fixed choice over the rounds seen
(:func:`gcode.sim.replay.whole_runs`, equal to the state-machine simulator), and recommends the
fastest.

  * One model unless asked for more: with ``models = 1`` only T = 0 candidates (uncoded, GC)
    are recommended; ``models = M`` admits schemes with delay T ≤ M − 1, which train M models
    round-robin, each getting 1/M of the steps.
  * Predicted speedups. gcode's round is the simulated round plus the coordinator's own time
    per round measured in the log (0 for a bare trace). DDP is modelled as waiting for every
    worker each round with no coding load, the round of uncoded at zero coordinator cost (its
    all-reduce is not modelled, which flatters DDP).
  * Confidence: the rounds seen, and a moving-block bootstrap over rounds (blocks of 4, so a
    bursty scheme's windows stay whole): the 10th–90th percentile of the predicted speedup over
    uncoded, and how often the recommendation stays within 1% of the best on a resample.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .sim.candidates import Candidate, CandidateConfig, candidate_grid
from .sim.load_model import LoadModel
from .sim.replay import whole_runs

BLOCK = 4


@dataclass(frozen=True)
class Measured:
    """Per-worker base times of a run (rounds × n) under ``model``, and the coordinator's own
    seconds per round."""

    trace: np.ndarray
    model: LoadModel
    overhead_s: float = 0.0
    source: str = "trace"
    filled: int = 0
    replied: int = 0


def from_log(path, prior: LoadModel | None = None) -> Measured:
    """A run log's times, with the load model fitted from its compute times."""
    from .tracelog import read_run
    run = read_run(path)
    model = run.load_model(prior)
    return Measured(run.trace(model), model, run.overhead_s, run.source, run.filled, run.replied)


def from_trace(trace: np.ndarray, model: LoadModel, name: str = "trace") -> Measured:
    """A trace's times (base times of ``model``); no coordinator time is known."""
    return Measured(np.asarray(trace, dtype=np.float64), model, 0.0, name)


def probe(model_fn, loss_fn, dataset_fn, optimizer_fn, *, scaling=None, run=None,
          jobs: int = 20, models: int = 1, bootstrap: int = 100, seed: int = 0,
          **fit_kwargs) -> dict:
    """Will coding help this training? A short uncoded probe: ``gcode.fit`` of the user's own
    functions on ``scaling``'s workers for ``jobs`` rounds (``run``'s batch size, seed and
    injection; no checkpoints, logs to a temporary JSONL), then :func:`advise` on its log. The
    result is :func:`advise`'s, with ``probe``: what the probe ran and its wall time."""
    from .api import CodingConfig, LogConfig, RunConfig, fit
    run = run if run is not None else RunConfig()
    with tempfile.TemporaryDirectory(prefix="gcode-probe") as tmp:
        log = Path(tmp) / "probe.jsonl"
        probe_run = dataclasses.replace(run, jobs=jobs, models=None, mode="concurrent",
                                        checkpoint=None, logs=LogConfig(jsonl=str(log)),
                                        eval_every=None)
        result = fit(model_fn, loss_fn, dataset_fn, optimizer_fn,
                     coding=CodingConfig(scheme="uncoded"), scaling=scaling, run=probe_run,
                     progress=fit_kwargs.pop("progress", False), **fit_kwargs)
        measured = dataclasses.replace(from_log(log), source=f"uncoded probe ({jobs} rounds)")
        advice = advise(measured, models=models, bootstrap=bootstrap, seed=seed)
    m = result.metrics
    advice["probe"] = {"jobs": jobs, "runtime_s": m["runtime_s"], "setup_s": m["setup_s"],
                       "workers": m["n"], "models": m["models"],
                       "steps_per_model": m["steps_per_model"]}
    return advice


def coding_config(c: Candidate) -> dict:
    """The fields of ``gcode.CodingConfig`` that run candidate ``c`` as a fixed choice."""
    out = {"scheme": c.scheme, **{k: v for k, v in c.params.items()}}
    if c.scheme == "uncoded":  # waits for every worker under any policy
        return out
    out["policy"] = c.policy
    if c.policy in ("partial", "paper"):
        out["mu"] = c.mu
    elif c.policy == "gap":
        out["gap"] = c.mu
    return out


def python_text(config: dict) -> str:
    return "gcode.CodingConfig(" + ", ".join(f"{k}={v!r}" for k, v in config.items()) + ")"


def flags_text(config: dict) -> str:
    names = {"gc_code": "--gc-code"}
    return " ".join(f"{names.get(k, '--' + k)} {v}" for k, v in config.items())


def advise(measured: Measured, models: int = 1, cfg: CandidateConfig | None = None,
           bootstrap: int = 100, seed: int = 0) -> dict:
    """The recommendation, its predicted speedups and their confidence (module docstring)."""
    if models < 1:
        raise ValueError(f"models must be >= 1, got {models}")
    trace = np.asarray(measured.trace, dtype=np.float64)
    rounds, n = trace.shape
    cfg = cfg or CandidateConfig(max_delay=min(1, models - 1))
    grid = candidate_grid(n, cfg)
    allowed = np.array([c.delay <= models - 1 for c in grid.candidates])
    jobs = rounds - max(c.delay for c in grid.candidates)
    if jobs < 2:
        raise ValueError(f"{measured.source}: {rounds} rounds are too few to advise on; "
                         f"log at least {2 + max(c.delay for c in grid.candidates)}")
    fixed = whole_runs(grid, trace, jobs, measured.model)["runtime_s"]
    runtime = np.where(allowed, fixed + jobs * measured.overhead_s, np.inf)
    best = int(np.argmin(runtime))
    uncoded = float(runtime[0])
    ddp = float(fixed[0])
    choice = grid.candidates[best]
    config = coding_config(choice)
    spread = _bootstrap(grid, trace, jobs, measured, allowed, best, bootstrap, seed)
    order = np.argsort(runtime)[:5]
    return {"source": measured.source, "rounds": rounds, "n": n, "jobs_simulated": jobs,
            "models": models,
            "load_model": {"kind": measured.model.kind, "slope": measured.model.slope,
                           "trace_load": measured.model.trace_load},
            "overhead_s_per_round": measured.overhead_s, "filled_times": measured.filled,
            "late_replies": measured.replied,
            "recommended": {"candidate": choice.to_dict(), "label": choice.label(),
                            "coding_config": config, "python": python_text(config),
                            "flags": flags_text(config)},
            "predicted": {"runtime_s": float(runtime[best]), "uncoded_s": uncoded, "ddp_s": ddp,
                          "speedup_vs_uncoded": uncoded / float(runtime[best]),
                          "speedup_vs_ddp": ddp / float(runtime[best])},
            "confidence": spread,
            "top": [{"label": grid.candidates[i].label(), "runtime_s": float(runtime[i])} for i in order]}


def _bootstrap(grid, trace, jobs, measured, allowed, best, resamples, seed) -> dict:
    rounds = trace.shape[0]
    rng = np.random.default_rng(seed)
    speedups, stays = [], 0
    for _ in range(resamples):
        starts = rng.integers(0, max(1, rounds - BLOCK + 1), size=-(-rounds // BLOCK))
        rows = np.concatenate([np.arange(s, min(s + BLOCK, rounds)) for s in starts])[:rounds]
        fixed = whole_runs(grid, trace[rows], jobs, measured.model)["runtime_s"]
        runtime = np.where(allowed, fixed + jobs * measured.overhead_s, np.inf)
        speedups.append(runtime[0] / runtime[best])
        stays += runtime[best] <= 1.01 * runtime.min()
    if not speedups:
        return {"bootstrap": 0}
    low, mid, high = np.percentile(speedups, [10, 50, 90])
    return {"bootstrap": resamples, "block_rounds": BLOCK,
            "speedup_vs_uncoded_p10": float(low), "speedup_vs_uncoded_p50": float(mid),
            "speedup_vs_uncoded_p90": float(high), "stays_best_within_1pct": stays / resamples}


def report(result: dict) -> str:
    """The advice as text."""
    p, c, lm = result["predicted"], result["confidence"], result["load_model"]
    model = (f"additive, {lm['slope']:.4g} s per unit load" if lm["kind"] == "additive"
             else f"proportional, recorded at load {lm['trace_load']}")
    guessed = f"; {result['filled_times']} cut workers' times guessed" if result["filled_times"] else ""
    models = "one model" if result["models"] == 1 else f"{result['models']} models"
    lines = [(f"{result['source']}: {result['rounds']} rounds x {result['n']} workers; load model {model}; "
              f"coordinator {1e3 * result['overhead_s_per_round']:.1f} ms per round{guessed}"),
             f"recommended ({models}): {result['recommended']['label']}",
             f"  python: {result['recommended']['python']}",
             f"  flags:  {result['recommended']['flags']}",
             (f"predicted: {p['speedup_vs_uncoded']:.2f}x uncoded gcode, {p['speedup_vs_ddp']:.2f}x DDP "
              f"(DDP: waits for all, no coding load, no all-reduce cost modelled)")]
    if c.get("bootstrap"):
        lines.append(f"confidence: {result['rounds']} rounds seen; block bootstrap ({c['bootstrap']}x): "
                     f"speedup over uncoded {c['speedup_vs_uncoded_p10']:.2f}-"
                     f"{c['speedup_vs_uncoded_p90']:.2f} "
                     f"(10th-90th pct), recommendation within 1% of the best in "
                     f"{c['stays_best_within_1pct']:.0%} of resamples")
    lines.append("next best: " + "; ".join(f"{t['label']} {t['runtime_s']:.2f} s"
                                           for t in result["top"][1:4]))
    return "\n".join(lines)
