"""``gcode bench trace``: every scheme on each public trace, in hindsight and out of sample.

For each trace, the rounds are split in halves. The evaluation window is the second half.
  * hindsight: the best parameters found by grid search *on the evaluation window itself*
    (what the paper reports);
  * out_of_sample: the best parameters found on the first half, evaluated on the second half.
Both columns are simulated by the scheme state machines (``gcode.sim.simulate``), so every job
is really decoded. ``auto`` is the online tuner (docs/AUTO.md) with its defaults: it only ever uses
past rounds (the tuning half primes it), so both of its columns hold the same online run.
``ignore`` is not tuned (a faster-looking but less exact gradient always
"wins"); it uses GC's chosen s and is labelled approximate.

The load slope is fitted by least squares to the median round time of the load-level traces
(``*-load*.csv``) only, never to a trace that is evaluated. ``--load-model proportional`` scales
each trace by load/trace_load instead, and needs no slope.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codes import make_scheme
from ..paths import save_figure
from ..sim import PaperPolicy, simulate
from ..sim.load_model import LoadModel
from ..sim.online import OnlineConfig, OnlineTuner
from ..sim.tune import TuneSettings, tune
from ..stragglers import load_trace

SCHEME_ORDER = ("uncoded", "ignore", "gc", "srsgc", "msgc")
DELAY_BUDGET = 4


@dataclass(frozen=True)
class TraceBenchConfig:
    traces_dir: Path
    mu: float = 1.0
    load_slope: float | None = None  # None: fit from the load-level files
    gc_code: str = "cyclic"
    load_model: str = "additive"       # or "proportional" (gcode.sim.load_model)
    trace_load: float | None = None    # proportional: the traces' load (None: 1/n)

    def __post_init__(self):
        if not Path(self.traces_dir).is_dir():
            raise ValueError(f"traces_dir: no such directory: {self.traces_dir}")
        if not self.mu > 0:
            raise ValueError(f"mu must be > 0, got {self.mu}")
        LoadModel(self.load_model, self.load_slope or 0.0, self.trace_load)  # validates

    def loads(self, slope: float) -> LoadModel:
        return LoadModel(self.load_model, slope if self.load_model == "additive" else 0.0,
                         self.trace_load)


def fit_load_slope(traces_dir: Path) -> dict:
    """Least-squares fit of median round time against per-worker load over the load-level files
    (``*-load*.csv``) only: the traces that are evaluated never enter the fit."""
    points = []
    for path in sorted(Path(traces_dir).glob("*-load*.csv")):
        load = float(path.stem.rsplit("load", 1)[1])
        points.append((load, float(np.median(load_trace(path)))))
    if len(points) < 2:
        raise ValueError(f"need at least two load-level traces in {traces_dir} to fit a slope")
    loads, medians = np.array(points).T
    slope, intercept = np.polyfit(loads, medians, 1)
    return {"slope_s_per_load": float(slope), "intercept_s": float(intercept),
            "points": [{"load": float(x), "median_s": float(y)} for x, y in points],
            "batch_per_job": 2048}


def public_traces(traces_dir: Path) -> list[Path]:
    """The load-0 traces (the ones the paper replays), sorted by name."""
    return sorted(p for p in Path(traces_dir).glob("lambda-*.csv") if "-load" not in p.name)


def _evaluate(trace: np.ndarray, name: str, params: dict, jobs: int, cfg: TraceBenchConfig,
              slope: float) -> dict:
    scheme = make_scheme(name, n=trace.shape[1], jobs=jobs, **params)
    result = simulate(scheme, trace, PaperPolicy(cfg.mu), cfg.loads(slope))
    return {"runtime_s": result.runtime_s, "params": params, "waits": result.waits,
            "rounds": result.rounds, "load": result.load, "delay_T": result.delay_T}


def _evaluate_auto(tuning: np.ndarray, evaluation: np.ndarray, jobs: int, cfg: TraceBenchConfig,
                   slope: float) -> dict:
    """The online auto scheme (its default settings) on the evaluation half, primed with the
    tuning half as past rounds: it never sees a round before that round has happened."""
    loads = cfg.loads(slope)
    tuner = OnlineTuner(evaluation.shape[1], jobs, loads, OnlineConfig())
    tuner.prime(tuning)
    result = simulate(tuner.scheme, evaluation, tuner, loads)
    return {"runtime_s": result.runtime_s, "params": {"switches": len(tuner.scheme.switches),
                                                      "final": tuner.current.scheme,
                                                      "final_mu": tuner.current.mu},
            "waits": result.waits, "rounds": result.rounds, "load": result.load,
            "delay_T": result.delay_T}


def _chosen_params(best: dict, cfg: TraceBenchConfig) -> dict[str, dict]:
    params = {name: dict(best[name]["params"]) for name in ("uncoded", "gc", "srsgc", "msgc")}
    params["ignore"] = {"s": params["gc"]["s"]}
    for name in ("gc", "srsgc", "msgc"):
        params[name]["gc_code"] = cfg.gc_code
    return params


def bench_trace_file(path: Path, cfg: TraceBenchConfig, slope: float) -> dict:
    trace = load_trace(path)
    half = trace.shape[0] // 2
    tuning, evaluation = trace[:half], trace[half:]
    jobs = evaluation.shape[0] - DELAY_BUDGET
    if jobs < 1:
        raise ValueError(f"{path.name}: {trace.shape[0]} rounds are too few to split in halves")
    settings = TuneSettings(jobs=jobs, mu=cfg.mu, load_slope=cfg.loads(slope).slope,
                            gc_code=cfg.gc_code, load_model=cfg.load_model,
                            trace_load=cfg.trace_load)
    start = time.perf_counter()
    hindsight = _chosen_params(tune(evaluation, settings)["best"], cfg)
    out_of_sample = _chosen_params(tune(tuning, settings)["best"], cfg)
    tune_s = time.perf_counter() - start
    schemes = {}
    for name in SCHEME_ORDER:
        schemes[name] = {
            "hindsight": _evaluate(evaluation, name, hindsight[name], jobs, cfg, slope),
            "out_of_sample": _evaluate(evaluation, name, out_of_sample[name], jobs, cfg, slope),
            "exact": name != "ignore",
        }
    schemes["auto"] = {"exact": True, "online": True}
    schemes["auto"]["hindsight"] = schemes["auto"]["out_of_sample"] = _evaluate_auto(
        tuning, evaluation, jobs, cfg, slope)
    for column in ("hindsight", "out_of_sample"):
        uncoded = schemes["uncoded"][column]["runtime_s"]
        gc = schemes["gc"][column]["runtime_s"]
        for name in schemes:
            row = schemes[name][column]
            row["speedup_vs_uncoded"] = uncoded / row["runtime_s"]
            row["speedup_vs_gc"] = gc / row["runtime_s"]
    return {"rounds": int(trace.shape[0]), "workers": int(trace.shape[1]),
            "tuning_rounds": [0, half], "evaluation_rounds": [half, int(trace.shape[0])],
            "jobs": jobs, "tune_seconds": tune_s, "schemes": schemes}


def run_trace_bench(cfg: TraceBenchConfig, progress=None) -> dict:
    needs_fit = cfg.load_model == "additive" and cfg.load_slope is None
    fit = fit_load_slope(cfg.traces_dir) if needs_fit else None
    slope = fit["slope_s_per_load"] if needs_fit else (cfg.load_slope or 0.0)
    out = {"mu": cfg.mu, "policy": "paper", "load_slope": slope, "load_slope_fit": fit,
           "load_model": cfg.load_model, "trace_load": cfg.trace_load,
           "gc_code": cfg.gc_code, "traces": {}}
    for path in public_traces(cfg.traces_dir):
        out["traces"][path.name] = bench_trace_file(path, cfg, slope)
        if progress is not None:
            progress(1)
    if not out["traces"]:
        raise ValueError(f"no lambda-*.csv traces in {cfg.traces_dir}")
    return out


def markdown_table(result: dict) -> str:
    model = result.get("load_model", "additive")
    how = (f"load slope {result['load_slope']:.4f} s/unit load (fitted to the load-level traces "
           f"only, batch 2048)" if model == "additive" else
           f"proportional load model, trace load {result.get('trace_load') or '1/n'}")
    lines = [f"Paper policy, mu={result['mu']}, {how}. Evaluation: second half of each trace.", ""]
    for name, res in result["traces"].items():
        lines += [(f"**{name}** (evaluation rounds {res['evaluation_rounds'][0]}-"
                   f"{res['evaluation_rounds'][1] - 1}, {res['jobs']} jobs)"), "",
                  ("| scheme | hindsight params | hindsight s | vs uncoded | vs GC | out-of-sample params "
                   "| out-of-sample s | vs uncoded | vs GC |"),
                  "|---|---|---|---|---|---|---|---|---|"]
        for scheme, row in res["schemes"].items():
            cells = [scheme + ("" if row["exact"] else " (approx.)")
                     + (" (online)" if row.get("online") else "")]
            for column in ("hindsight", "out_of_sample"):
                r = row[column]
                params = ",".join(f"{k}={v}" for k, v in r["params"].items() if k != "gc_code") or "-"
                cells += [params, f"{r['runtime_s']:.3f}", f"{r['speedup_vs_uncoded']:.3f}x",
                          f"{r['speedup_vs_gc']:.3f}x"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, out_dir: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    traces = list(result["traces"].items())
    fig, axes = plt.subplots(1, len(traces), figsize=(6 * len(traces), 3.6), squeeze=False)
    for ax, (name, res) in zip(axes[0], traces):
        names = list(res["schemes"])
        x = np.arange(len(names))
        for offset, column, color in ((-0.2, "hindsight", "tab:gray"), (0.2, "out_of_sample", "tab:blue")):
            ax.bar(x + offset, [res["schemes"][s][column]["runtime_s"] for s in names], 0.4,
                   label=column.replace("_", "-"), color=color)
        ax.set_xticks(x, names)
        ax.set_ylabel("simulated runtime (s)")
        ax.set_title(name.replace(".csv", ""), fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # the legend sits below the axes, never on a bar
    path = Path(out_dir) / "bench_trace.png"
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths
