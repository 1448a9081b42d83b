"""``gcode bench auto``: the online auto scheme against the hindsight-best fixed choice over the
same candidates and policies, and against uncoded, on a suite of traces, under both load models.

Suite (each trace × {additive, proportional}):
  * the bundled Lambda traces (``lambda-*.csv`` in --traces: 256 workers; 26 jobs on 30 rounds,
    16 on 20), additive slope 2.2013 s (the authors' fit), proportional at load 1/n;
  * Gilbert–Elliott traces generated from seeds: 64 and 128 workers, 50 rounds, 46 jobs, the
    default chain and a persistent one (bad spells of 10 rounds), additive slope 2.2013 s;
  * traces recorded from live runs (``*.rounds.jsonl`` logs, via :mod:`gcode.tracelog`): the
    additive slope fitted from the workers' compute times, proportional at the run's load.
For each: auto (``OnlineTuner``, its decisions from past rounds only, the trace's load model
as its prior and then fitted from the compute times it sees), the best fixed candidate of the
same grid in hindsight (:func:`gcode.sim.replay.whole_runs`, equal to the state machine), and
uncoded. Regret is auto / hindsight-best − 1. For a generated trace, also the fixed choice with
the least mean runtime over other draws of its chain, and that choice's regret on this draw: the
part of the hindsight-best's edge that is the draw's luck (no online chooser sees it coming).

Protocol: the tuner's own settings (TUNING_GRID) are chosen on a separate tuning suite of
Gilbert–Elliott and i.i.d. traces with other parameters, sizes and seeds, never on the traces
evaluated: the fewest runs more than 1% slower than uncoded, then the least mean regret. The tuner's
cost per round on the coordinator (observe + decide) is timed in every run, against a fixed scheme's
policy (which does no work per round).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..paths import save_figure
from ..sim import simulate
from ..sim.candidates import candidate_grid
from ..sim.load_model import LoadModel
from ..sim.online import OnlineConfig, OnlineTuner
from ..sim.replay import whole_runs
from ..stragglers import (
    BurstyDelay,
    GilbertElliottDelay,
    ParetoDelay,
    ShiftedExponentialDelay,
    load_trace,
)

SLOPE = 2.2013
LOAD_MODELS = ("additive", "proportional")
GE_MODELS = {"ge": GilbertElliottDelay(),
             "ge-persistent": GilbertElliottDelay(p_good_to_bad=0.02, p_bad_to_good=0.1, slowdown=4.0)}
EVAL_SEEDS = (0, 1)
HELD_OUT_SEEDS = (2, 3, 4)  # reported apart: seeds no mechanism of the tuner was developed on
GE_WORKERS = (64, 128)
GE_ROUNDS, GE_JOBS = 50, 46
# gc_code is not selected here: regret is against the best of the same grid, and FR's coarser
# grid has a weaker best, so regret favours it even where the group code runs faster (docs/AUTO.md)
TUNING_GRID = {"start": ("gc", "uncoded"), "start_s_fraction": (1 / 16, 1 / 8), "confidence": (0.5, 1.0),
               "stress": (0.0, 0.05), "smooth": (0.0, 0.7)}
BAYES_DRAWS = 20  # other draws of a generated trace's chain, for the fixed choice it favours
BASE = OnlineConfig()
LAMBDA_JOBS = {"lambda-cnn-w256-r30-canada.csv": 26, "lambda-cnn-w256-r20-canada.csv": 16}


@dataclass(frozen=True)
class SuiteTrace:
    name: str
    source: str          # lambda | ge | live | tuning
    trace: np.ndarray    # base times (rounds × n)
    jobs: int
    slope: float         # the additive model's slope
    trace_load: float | None = None  # the proportional model's reference load (None: 1/n)
    generator: object = None  # the delay model a generated trace was drawn from

    def model(self, kind: str) -> LoadModel:
        return (LoadModel("additive", self.slope) if kind == "additive"
                else LoadModel("proportional", 0.0, self.trace_load))


def lambda_suite(traces_dir: Path) -> list[SuiteTrace]:
    out = []
    for path in sorted(Path(traces_dir).glob("lambda-*.csv")):
        trace = load_trace(path)
        out.append(SuiteTrace(path.stem.replace("lambda-cnn-w256-", ""), "lambda", trace,
                              LAMBDA_JOBS.get(path.name, trace.shape[0] - 4), SLOPE))
    return out


def ge_suite(seeds=EVAL_SEEDS, workers=GE_WORKERS, models=GE_MODELS, source: str = "ge") -> list[SuiteTrace]:
    return [SuiteTrace(f"{name}-n{n}-seed{seed}", source, model.sample(GE_ROUNDS, n, seed=seed),
                       GE_JOBS, SLOPE, generator=model)
            for name, model in models.items() for n in workers for seed in seeds]


def live_suite(logs: list[Path]) -> list[SuiteTrace]:
    """Traces of live runs' logs; the additive slope is fitted from their compute times."""
    from ..tracelog import read_run
    out = []
    for path in logs:
        run = read_run(path)
        fitted = run.load_model()
        model = fitted if fitted.kind == "additive" else LoadModel("additive", 0.0)
        trace = run.trace(model)
        out.append(SuiteTrace(Path(path).name.replace(".rounds.jsonl", ""), "live", trace,
                              trace.shape[0] - 1, model.slope, float(np.median(run.loads))))
    return out


def tuning_suite() -> list[SuiteTrace]:
    """Traces the tuner's settings are chosen on: other chains, sizes and seeds than the
    evaluation suite's, and i.i.d. delays."""
    models = {"ge-mild": GilbertElliottDelay(p_good_to_bad=0.03, p_bad_to_good=0.3, slowdown=2.5),
              "ge-heavy": GilbertElliottDelay(p_good_to_bad=0.1, p_bad_to_good=0.6, slowdown=4.0)}
    out = ge_suite(seeds=(100, 103), workers=(32, 96), models=models)
    for name, model in (("shifted-exp", ShiftedExponentialDelay()), ("pareto", ParetoDelay())):
        for n in (48, 160):
            out.append(SuiteTrace(f"{name}-n{n}", "tuning", model.sample(GE_ROUNDS, n, seed=101),
                                  GE_JOBS, SLOPE))
    for n, lam in ((6, 1), (10, 2)):  # small clusters with bursty stragglers, as live runs inject
        model = BurstyDelay(1, 2, lam, slowdown=3.0)
        out.append(SuiteTrace(f"bursty-n{n}", "tuning", model.sample(20, n, seed=102), 18, SLOPE))
    return out


def evaluate(item: SuiteTrace, kind: str, cfg: OnlineConfig, bayes: bool = False) -> dict:
    """auto, the hindsight-best candidate of the same grid, and uncoded on one trace (``bayes``:
    also the fixed choice its chain favours, :func:`_bayes`)."""
    loads = item.model(kind)
    n = item.trace.shape[1]
    grid = candidate_grid(n, cfg.candidates)
    fixed = whole_runs(grid, item.trace, item.jobs, loads)
    best = int(np.argmin(fixed["runtime_s"]))
    tuner = OnlineTuner(n, item.jobs, loads, cfg)
    spent = _timed_observe(tuner)
    result = simulate(tuner.scheme, item.trace, tuner, loads)
    auto, hindsight, uncoded = result.runtime_s, float(fixed["runtime_s"][best]), float(fixed["runtime_s"][0])
    return {"trace": item.name, "source": item.source, "load_model": kind, "n": n,
            "jobs": item.jobs, "slope": item.slope if kind == "additive" else None,
            "auto_s": auto, "hindsight_s": hindsight, "uncoded_s": uncoded,
            "hindsight_choice": grid.candidates[best].to_dict(),
            "hindsight_label": grid.candidates[best].label(),
            "regret": auto / hindsight - 1, "vs_uncoded": auto / uncoded - 1,
            "switches": len(tuner.scheme.switches), "waits": result.waits,
            "final": tuner.current.label(), "candidates": len(grid),
            "tuner_ms_per_round": 1e3 * float(np.mean(spent)) if spent else 0.0,
            **(_bayes(item, loads, grid, fixed["runtime_s"]) if bayes else {})}


def _bayes(item: SuiteTrace, loads: LoadModel, grid, runtimes: np.ndarray) -> dict:
    """For a generated trace: the fixed choice with the least mean runtime over BAYES_DRAWS other
    draws of its chain (what a chooser that knew the chain exactly, but not this draw, would fix),
    and its regret on this trace. It tells how much of the hindsight-best's edge is luck of the
    draw that no online chooser can see coming."""
    if item.generator is None:
        return {}
    rounds, n = item.trace.shape
    total = sum(whole_runs(grid, item.generator.sample(rounds, n, seed=10_000 + i), item.jobs,
                           loads)["runtime_s"] for i in range(BAYES_DRAWS))
    pick = int(np.argmin(total))
    return {"bayes_label": grid.candidates[pick].label(),
            "bayes_regret": float(runtimes[pick] / runtimes.min() - 1)}


def _timed_observe(tuner: OnlineTuner) -> list[float]:
    """Time every call of ``tuner.observe`` (which also decides); the list fills as it runs."""
    spent: list[float] = []
    observe = tuner.observe

    def timed(*args, **kwargs):
        start = time.perf_counter()
        observe(*args, **kwargs)
        spent.append(time.perf_counter() - start)
    tuner.observe = timed
    return spent


def tuner_overhead(ns=(8, 64, 256), rounds: int = 120, seed: int = 7) -> list[dict]:
    """The tuner's seconds per round on the coordinator (observe, which also decides), timed
    call by call over a simulated run per n (Gilbert–Elliott, additive); a fixed scheme's
    policy does no work there. The machine's load average is reported alongside."""
    import os
    out = []
    for n in ns:
        trace = GilbertElliottDelay().sample(rounds + 2, n, seed=seed)
        tuner = OnlineTuner(n, rounds, LoadModel("additive", SLOPE))
        spent = _timed_observe(tuner)
        simulate(tuner.scheme, trace, tuner, LoadModel("additive", SLOPE))
        ms = 1e3 * np.array(spent)
        out.append({"n": n, "candidates": len(tuner.grid), "rounds": len(ms),
                    "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
                    "mean_ms": float(ms.mean()), "load_average": os.getloadavg()[0]})
    return out


def select_settings(suite: list[SuiteTrace], grid: dict = TUNING_GRID, progress=None) -> dict:
    """The tuner settings that lose to uncoded by more than 1% on the fewest runs of the tuning
    suite (the acceptance's hard half), then with the least mean regret, then worst. (Not the
    least worst regret: on the suite's hardest trace, 6 workers with bursty stragglers, every
    setting is 12–33% off, so the worst ranks settings by one trace.) Each row also counts the
    runs that miss the acceptance (``misses``)."""
    rows = []
    for values in itertools.product(*grid.values()):
        cfg = replace(BASE, **dict(zip(grid, values)))
        runs = [evaluate(item, kind, cfg) for item in suite for kind in LOAD_MODELS]
        regrets = [run["regret"] for run in runs]
        rows.append({"settings": dict(zip(grid, values)), "worst_regret": float(max(regrets)),
                     "mean_regret": float(np.mean(regrets)),
                     "lose_to_uncoded": sum(run["vs_uncoded"] > 0.01 for run in runs),
                     "misses": sum(_missed(run) for run in runs)})
        if progress is not None:
            progress(1)
    best = min(rows, key=lambda row: (row["lose_to_uncoded"], round(row["mean_regret"], 4),
                                      row["worst_regret"]))
    return {"traces": [item.name for item in suite], "grid": rows, "chosen": best["settings"]}


def run_auto_bench(traces_dir: Path, logs: list[Path] = (), grid: dict | None = TUNING_GRID,
                   models: tuple[str, ...] = LOAD_MODELS, quick: bool = False, progress=None) -> dict:
    """The whole benchmark (``grid`` None: the tuner's defaults, no selection)."""
    selection = select_settings(tuning_suite(), grid, progress) if grid else None
    cfg = replace(BASE, **selection["chosen"]) if selection else BASE
    suite = lambda_suite(traces_dir) + ge_suite(seeds=EVAL_SEEDS[:1] if quick else EVAL_SEEDS)
    suite += live_suite(list(logs))
    suite += ge_suite(seeds=() if quick else HELD_OUT_SEEDS, source="ge-heldout")
    rows = [evaluate(item, kind, cfg, bayes=item.source == "ge") for item in suite for kind in models]
    overhead = tuner_overhead()
    held_out = [row for row in rows if row["source"] == "ge-heldout"]
    rows = [row for row in rows if row["source"] != "ge-heldout"]
    regrets = np.array([row["regret"] for row in rows])
    misses = [row for row in rows if _missed(row)]
    return {"held_out": held_out, "by_source": _by_source(rows + held_out),
            "tuner_settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "meta_selection": selection, "rows": rows, "tuner_overhead": overhead,
            "summary": {"runs": len(rows), "max_regret": float(regrets.max()),
                        "mean_regret": float(regrets.mean()),
                        "max_vs_uncoded": float(max(row["vs_uncoded"] for row in rows)),
                        "misses": len(misses),
                        "tuner_ms_per_round_max": float(max(r["tuner_ms_per_round"] for r in rows))}}


def _missed(row: dict) -> bool:
    """The acceptance's line: more than 3% over the hindsight-best or 1% over uncoded."""
    return row["regret"] > 0.03 or row["vs_uncoded"] > 0.01


def _by_source(rows: list[dict]) -> list[dict]:
    """Per trace source and load model: runs, how many meet the acceptance, worst and mean regret,
    worst vs uncoded."""
    out = []
    for source, kind in dict.fromkeys((row["source"], row["load_model"]) for row in rows):
        sub = [row for row in rows if (row["source"], row["load_model"]) == (source, kind)]
        regrets = [row["regret"] for row in sub]
        out.append({"source": source, "load_model": kind, "runs": len(sub),
                    "met": sum(not _missed(row) for row in sub), "max_regret": float(max(regrets)),
                    "mean_regret": float(np.mean(regrets)),
                    "max_vs_uncoded": float(max(row["vs_uncoded"] for row in sub))})
    return out


def markdown_table(result: dict) -> str:
    s = result["summary"]
    chosen = (", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in result["meta_selection"]["chosen"].items())
              if result["meta_selection"] else "the defaults")
    head = (f"Auto vs the hindsight-best fixed choice over the same candidates and policies (per "
            f"trace, the candidates column), and vs uncoded; tuner settings ({chosen}) chosen on a "
            f"separate tuning suite. {s['runs']} runs: worst regret {s['max_regret']:.1%}, mean "
            f"{s['mean_regret']:.1%}; worst vs uncoded {s['max_vs_uncoded']:+.1%}; "
            f"{s['misses']} miss the acceptance (regret > 3% or > 1% slower than uncoded).")
    chain = [row for row in result["rows"] if "bayes_regret" in row]
    if chain:
        worse = sum(row["bayes_regret"] > 0.03 for row in chain)
        head += (f" On the {len(chain)} generated runs, the fixed choice with the least mean runtime "
                 f"over {BAYES_DRAWS} other draws of the same chain (a chooser that knows the chain "
                 f"but not the draw) is itself more than 3% off the hindsight-best on {worse}.")
    lines = [head, "", "Per source and load model (ge-heldout: Gilbert–Elliott seeds "
             f"{', '.join(map(str, HELD_OUT_SEEDS))}, never looked at while developing the tuner; "
             "not in the totals above):", "",
             "| source | load model | runs | meet the acceptance | worst regret | mean regret "
             "| worst vs uncoded |",
             "|---|---|---|---|---|---|---|"]
    for g in result.get("by_source", []):
        lines.append(f"| {g['source']} | {g['load_model']} | {g['runs']} | {g['met']} | "
                     f"{g['max_regret']:+.1%} | {g['mean_regret']:+.1%} | {g['max_vs_uncoded']:+.1%} |")
    lines += ["",
             ("| trace | load model | n | jobs | candidates | auto s | hindsight-best s | hindsight choice "
              "| uncoded s | regret | vs uncoded | chain's fixed choice: regret | switches "
              "| tuner ms/round |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"] + result.get("held_out", []):
        miss = " **miss**" if _missed(row) else ""
        lines.append(f"| {row['trace']} | {row['load_model']} | {row['n']} | {row['jobs']} | "
                     f"{row['candidates']} | {row['auto_s']:.3f} | {row['hindsight_s']:.3f} | "
                     f"{row['hindsight_label']} | "
                     f"{row['uncoded_s']:.3f} | {row['regret']:+.1%}{miss} | {row['vs_uncoded']:+.1%} | "
                     f"{_bayes_cell(row)} | {row['switches']} | {row['tuner_ms_per_round']:.2f} |")
    lines += ["", ("The tuner's cost per round on the coordinator (observe + decide; a fixed scheme's "
                   "policy does no work there), timed call by call:"), "",
              "| n | candidates | rounds | median ms | p90 ms | mean ms | load average |",
              "|---|---|---|---|---|---|---|"]
    for o in result.get("tuner_overhead", []):
        lines.append(f"| {o['n']} | {o['candidates']} | {o['rounds']} | {o['median_ms']:.3f} | "
                     f"{o['p90_ms']:.3f} | {o['mean_ms']:.3f} | {o['load_average']:.1f} |")
    return "\n".join(lines)


def _bayes_cell(row: dict) -> str:
    if "bayes_regret" not in row:
        return "–"
    return f"{row['bayes_regret']:+.1%} ({row['bayes_label']})"


def plot(result: dict, out_dir) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.28 * len(rows) / 2 + 2), sharey=True)
    for ax, kind in zip(axes, LOAD_MODELS):
        sub = [r for r in rows if r["load_model"] == kind]
        y = np.arange(len(sub))
        ax.barh(y - 0.2, [100 * r["regret"] for r in sub], 0.4, label="auto vs hindsight-best",
                color="tab:green")
        ax.barh(y + 0.2, [100 * r["vs_uncoded"] for r in sub], 0.4, label="auto vs uncoded", color="tab:gray")
        ax.axvline(3, color="tab:red", lw=0.8, ls="--")
        ax.axvline(0, color="black", lw=0.6)
        ax.set_yticks(y, [r["trace"] for r in sub], fontsize=7)
        ax.set_title(f"{kind} load model", fontsize=9)
        ax.set_xlabel("runtime difference (%)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(out_dir) / "bench_auto.png"
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return [path]
