"""``gcode bench live``: real Ray runs on this machine, schemes side by side under injected
stragglers.

Setup: 8 worker actors, an MLP on the bundled digits, one shared actor pool for every run. Each
worker sleeps per round as an injected delay model says (added after its real compute):
  * bursty: a (B,W,λ) = (1,2,2) pattern (M-SGC's design model), 0.08 s rounds, stragglers 4x;
  * gilbert_elliott: two-state Markov stragglers, same timescale;
  * trace: the 30-round Lambda trace, first 8 columns, scaled so a round takes ~0.2-0.6 s.
Runs are interleaved (repeat → injection → schemes in a rotated order) so that machine drift
hits every scheme alike. For the trace injection, the same trace goes through the simulator
with the same time scale and parameters, so each scheme gets a live-over-sim ratio.

The simulator's load model is calibrated once, before the benchmark, on separate calibration
runs: uncoded and FR gradient codes at four loads (1/8 … 1), no injected delay, waiting for every
worker so every response time is seen. A least-squares line through (load, mean response time)
gives one slope and one intercept (the per-call overhead), and every scheme's simulation uses
those two numbers. No scheme is simulated with a slope fitted to its own live run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..codes import make_scheme
from ..config import ClusterConfig, TrainConfig, from_dict
from ..paths import save_figure
from ..sim import make_policy, simulate
from ..sim.load_model import LoadModel
from ..stragglers import load_trace

N = 8
SCHEMES = {
    "uncoded": ({"name": "uncoded"}, "paper"),
    "ignore": ({"name": "ignore", "s": 2}, "paper"),
    "gc": ({"name": "gc", "s": 2, "gc_code": "fr"}, "paper"),
    "srsgc": ({"name": "srsgc", "B": 1, "W": 2, "lam": 2, "gc_code": "fr"}, "paper"),
    "msgc": ({"name": "msgc", "B": 1, "W": 2, "lam": 2, "gc_code": "fr"}, "paper"),
    "auto": ({"name": "auto"}, "partial"),
}


def injections(trace_path: Path, time_scale: float) -> dict[str, dict]:
    return {
        "bursty": {"model": "bursty", "params": {"B": 1, "W": 2, "lam": 2, "base": 0.08,
                                                 "slowdown": 4.0, "straggle_prob": 0.15}},
        "gilbert_elliott": {"model": "gilbert_elliott",
                            "params": {"p_good_to_bad": 0.08, "p_bad_to_good": 0.5,
                                       "base": 0.08, "slowdown": 4.0}},
        "trace": {"trace": str(trace_path), "time_scale": time_scale},
    }


def _config(scheme: dict, policy: str, inject: dict, jobs: int, seed: int) -> TrainConfig:
    return from_dict({
        "scheme": {**scheme, "jobs": jobs}, "policy": {"name": policy, "mu": 1.0},
        "cluster": {"workers": N},
        "train": {"model": "mlp", "dataset": "digits", "batch_size": 512, "seed": seed,
                  "optimizer": "adam", "lr": 0.01},
        "inject": {**inject, "seed": seed},
    })


#: calibration runs: (label, scheme) at loads 1/8, 1/4, 1/2 and 1 for N = 8 workers
CALIBRATION = (("uncoded", {"name": "uncoded"}),
               ("gc s=1", {"name": "gc", "s": 1, "gc_code": "fr"}),
               ("gc s=3", {"name": "gc", "s": 3, "gc_code": "fr"}),
               ("gc s=7", {"name": "gc", "s": 7, "gc_code": "fr"}))


def calibrate(pool, jobs: int, seed: int = 0, progress=None) -> dict:
    """One slope and one intercept for the simulator, from separate live runs at four loads.

    Each run waits for every worker (policy ``all``) with no injected delay; its point is
    (normalized load, mean response time of the workers). The fit is a least-squares line; a
    negative slope or intercept (noise) is clipped to 0 for the simulator and reported raw.
    """
    from ..runtime import train
    points = []
    for label, scheme in CALIBRATION:
        result = train(_config(scheme, "all", {}, jobs, seed), pool=pool)
        points.append({"run": label, "load": float(result["load"]),
                       "response_s_mean": float(result["response_s_mean"])})
        if progress is not None:
            progress(1)
    loads = np.array([p["load"] for p in points])
    responses = np.array([p["response_s_mean"] for p in points])
    slope, intercept = np.polyfit(loads, responses, 1)
    return {"slope_s_per_load": max(float(slope), 0.0), "intercept_s": max(float(intercept), 0.0),
            "fit": {"slope": float(slope), "intercept": float(intercept)}, "points": points,
            "jobs": jobs}


def _simulated(name: str, scheme_cfg: dict, jobs: int, trace: np.ndarray, time_scale: float,
               loads: LoadModel) -> float | None:
    if name == "auto":  # as the live row runs it: one model, so T = 0 candidates only
        from ..config.tables import auto_max_delay
        from ..sim.online import OnlineConfig, OnlineTuner
        tuner = OnlineTuner(N, jobs, loads, OnlineConfig(max_delay=auto_max_delay()))
        return simulate(tuner.scheme, trace, tuner, loads, time_scale).runtime_s
    params = {k: v for k, v in scheme_cfg.items() if k != "name"}
    scheme = make_scheme(scheme_cfg["name"], n=N, jobs=jobs, **params)
    return simulate(scheme, trace, make_policy(SCHEMES[name][1], mu=1.0), loads, time_scale).runtime_s


def run_live_bench(trace_path: Path, quick: bool = True, repeats: int | None = None,
                   time_scale: float = 0.3, jobs: int | None = None, progress=None) -> dict:
    from ..runtime import pool_session, train

    jobs = jobs or (12 if quick else 24)
    repeats = repeats or (1 if quick else 3)
    trace = load_trace(trace_path)
    plan = injections(trace_path, time_scale)
    runs: dict[str, dict[str, list[dict]]] = {inj: {s: [] for s in SCHEMES} for inj in plan}
    names = list(SCHEMES)
    with pool_session(ClusterConfig(workers=N), N) as pool:
        calibration = calibrate(pool, jobs, progress=progress)
        for rep in range(repeats):
            for inj_name, inject in plan.items():
                order = names[rep % len(names):] + names[:rep % len(names)]
                for name in order:
                    scheme_cfg, policy = SCHEMES[name]
                    cfg = _config(scheme_cfg, policy, inject, jobs, seed=rep)
                    runs[inj_name][name].append(train(cfg, pool=pool))
                    if progress is not None:
                        progress(1)
    loads = LoadModel("additive", calibration["slope_s_per_load"],
                      intercept=calibration["intercept_s"])
    out = {"workers": N, "jobs": jobs, "repeats": repeats, "model": "mlp", "dataset": "digits",
           "time_scale": time_scale, "calibration": calibration, "injections": {}}
    for inj_name, per_scheme in runs.items():
        rows = {}
        for name, results in per_scheme.items():
            runtime = float(np.median([r["runtime_s"] for r in results]))
            rows[name] = {"runtime_s": runtime, "runtime_s_all": [r["runtime_s"] for r in results],
                          "rounds": results[0]["rounds"], "waits": results[0]["waits"],
                          "models": results[0]["models"],
                          "steps_per_model": results[0]["steps_per_model"],
                          "final_loss": float(np.mean(results[-1]["final_loss"])),
                          "approximate": bool(results[0].get("approximate")),
                          "load_slope_s": float(np.median([r["load_slope_s"] for r in results]))}
            if inj_name == "trace":
                sim = _simulated(name, SCHEMES[name][0], jobs, trace, time_scale, loads)
                rows[name]["simulated_s"] = sim
                rows[name]["live_over_sim"] = runtime / sim
        for row in rows.values():
            row["speedup_vs_uncoded"] = rows["uncoded"]["runtime_s"] / row["runtime_s"]
            row["speedup_vs_gc"] = rows["gc"]["runtime_s"] / row["runtime_s"]
        out["injections"][inj_name] = rows
    return out


def markdown_table(result: dict) -> str:
    lines = [f"Live Ray runs: {result['workers']} workers, MLP on digits, {result['jobs']} jobs, "
             f"median of {result['repeats']} interleaved repeat(s).", ""]
    cal = result.get("calibration")
    if cal:
        loads = ", ".join(f"{point['load']:.3g}" for point in cal["points"])
        lines += [f"Simulator calibrated once on separate runs (loads {loads}, no injection): "
                  f"slope {cal['slope_s_per_load']:.4f} s/unit load, intercept "
                  f"{cal['intercept_s'] * 1e3:.1f} ms per call, for every scheme.", ""]
    for inj, rows in result["injections"].items():
        lines += [f"**injection: {inj}**", "",
                  "| scheme | wall s | rounds | waits | final loss | vs uncoded | vs GC |"
                  + (" simulated s | live / sim |" if inj == "trace" else ""),
                  "|---|---|---|---|---|---|---|" + ("---|---|" if inj == "trace" else "")]
        for name, r in rows.items():
            line = (f"| {name}{' (approx.)' if r['approximate'] else ''} | {r['runtime_s']:.2f} | "
                    f"{r['rounds']} | "
                    f"{r['waits']} | {r['final_loss']:.3f} | {r['speedup_vs_uncoded']:.2f}x | "
                    f"{r['speedup_vs_gc']:.2f}x |")
            if inj == "trace":
                line += f" {r['simulated_s']:.2f} | {r['live_over_sim']:.3f} |"
            lines.append(line)
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, out_dir) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    injs = list(result["injections"])
    fig, axes = plt.subplots(1, len(injs), figsize=(5 * len(injs), 3.6), squeeze=False)
    for ax, inj in zip(axes[0], injs):
        rows = result["injections"][inj]
        names = list(rows)
        x = np.arange(len(names))
        ax.bar(x - 0.2 if inj == "trace" else x, [rows[n]["runtime_s"] for n in names],
               0.4 if inj == "trace" else 0.6, label="live wall clock", color="tab:blue")
        if inj == "trace":
            ax.bar(x + 0.2, [rows[n]["simulated_s"] for n in names], 0.4, label="simulated", color="tab:gray")
            ax.legend(fontsize=8)
        ax.set_xticks(x, names, fontsize=8)
        ax.set_ylabel("seconds")
        ax.set_title(f"injection: {inj}", fontsize=9)
    fig.tight_layout()
    path = Path(out_dir) / "bench_live.png"
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return [path]
