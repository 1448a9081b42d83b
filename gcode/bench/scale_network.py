"""``gcode bench scale --network``: each data plane's round time as n grows, and where the star
stops paying, under the network model of :mod:`gcode.sim.network`.

For n = 8 … 1,024 workers, M-SGC (FR code, the paper's parameters scaled to n) is simulated on
a synthetic trace resampled from the bundled Lambda trace (:func:`gcode.bench.scale.synthetic_trace`):
its mean round is the compute per round, the same on both planes. Each plane's communication per
round is then added for d = 11.2M (ResNet-18) and 10⁹ parameters: the star's parameters out and
gradients in through the coordinator's link, the collective's control round trip and ring
allreduce (formulas in :mod:`gcode.sim.network`). Where the star stops paying depends on the
network and the planes' own work alone (compute cancels): :func:`gcode.sim.network.star_pays`
scans n = 2 … 100,000.

**The planes' work** (:class:`gcode.sim.plane_work.PlaneWork`): where the given network models
none, the bench adds :data:`CPU_WORK`, a dedicated core's costs measured on this machine (fold,
Adam step, replica check: ``benchmarks/network_calibration.py work``), and the collective's fp64
accumulators, which M-SGC needs (its allreduce moves 8 bytes per value). The star's coordinator
then sums n messages per round where a collective worker folds one; the step is the same on both.
Every row also gives the links-only figures (the model before the work terms), so the move of the
crossover shows: with the work and the fp64 allreduce the star pays again at small n and
ResNet-18's d, where the links alone said never. CPU costs: a GPU sums and steps far faster, so
pass the work keys in ``--network`` for a GPU run.

These are predictions of the model, not measurements; ``cluster/netns.sh`` measures real links.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from ..codes import make_scheme
from ..sim import PaperPolicy, simulate
from ..sim.load_model import LoadModel
from ..sim.network import NetworkModel, star_pays
from ..sim.paper import PAPER_LOAD_SLOPE, default_params
from ..sim.plane_work import PlaneWork
from .scale import synthetic_trace

NS = (8, 16, 32, 64, 128, 256, 512, 1024)
PARAMS = (11.2e6, 1e9)
#: the bench's default network: 10 Gbit/s worker links, a coordinator on a 100 Gbit/s link
DEFAULT_NETWORK = NetworkModel(alpha=50e-6, beta=1.25e9, coord_beta=12.5e9)
SCHEME = "msgc"
#: a dedicated core's work per parameter on this machine (benchmarks/results/network_calibration.json,
#: ``work``: one torch thread, the fastest of 21, 2026-12-07; Adam, as ``gcode train``'s default)
CPU_WORK = PlaneWork(fold_fp32_s_per_param=0.98e-9, fold_fp64_s_per_param=3.85e-9, step_s_per_param=3.06e-9,
                     check_s_per_param=5.91e-9, optimizer="adam")


def with_work(model: NetworkModel) -> NetworkModel:
    """``model`` with :data:`CPU_WORK` and fp64 accumulators where it models no work."""
    if model.work.modelled:
        return model
    return replace(model, work=CPU_WORK, accumulate_bytes=model.accumulate_bytes or 8)


def links_only(model: NetworkModel) -> NetworkModel:
    """``model`` without work terms (the collective's accumulator as the messages, unless given)."""
    return replace(model, work=PlaneWork())


def _compute(n: int, rounds: int, loads: LoadModel) -> dict:
    params = {**default_params(SCHEME, n), "gc_code": "fr"}
    trace = synthetic_trace(rounds, n)
    scheme = make_scheme(SCHEME, n=n, jobs=rounds - 4, **params)
    result = simulate(scheme, trace, PaperPolicy(1.0), loads)
    return {"params": params, "task_rounds": result.task_rounds, "decoded_jobs": result.decoded_jobs,
            "compute_s": result.runtime_s, "compute_s_per_round": result.runtime_s / result.task_rounds}


def run_network_bench(model: NetworkModel = DEFAULT_NETWORK, ns=NS, params=PARAMS, rounds: int = 100,
                      progress=None) -> dict:
    """Rows (n, d) with each plane's communication, work and round time (and the links-only star /
    collective ratio); star_pays per d, with the work and with the links only."""
    loads = LoadModel("additive", PAPER_LOAD_SLOPE)
    bare, model = links_only(model), with_work(model)
    rows = []
    for n in ns:
        compute = _compute(n, rounds, loads)
        for d in params:
            net, links = model.with_params(d), bare.with_params(d)
            costs = net.run_costs(n, compute["task_rounds"], compute["decoded_jobs"], compute["compute_s"])
            per_round = {plane: {"comm_s_per_round": c["comm_s_per_round"],
                                 "work_s_per_round": c["work_s_per_round"],
                                 "round_s": c["runtime_s"] / compute["task_rounds"],
                                 "coordinator_bytes_per_round": c["coordinator_bytes_per_round"]}
                         for plane, c in costs.items()}
            c = compute["compute_s_per_round"]
            rows.append({"n": n, "params": d, "scheme": SCHEME, "scheme_params": compute["params"],
                         "compute_s_per_round": c, **per_round,
                         "star_pays_below_params": net.break_even_params(n),
                         "star_over_collective":
                             per_round["star"]["round_s"] / per_round["collective"]["round_s"],
                         "links_only_star_over_collective":
                             (c + float(links.star_round(n))) / (c + float(links.collective_round(n)))})
        if progress is not None:
            progress(1)
    return {"network": model.as_dict(), "ns": list(ns), "params": list(params), "rounds": rounds,
            "rows": rows, "star_pays": {f"{d:g}": star_pays(model.with_params(d)) for d in params},
            "star_pays_links_only": {f"{d:g}": star_pays(bare.with_params(d)) for d in params}}


def _pays_text(ranges) -> str:
    return "never (n >= 2)" if not ranges else ", ".join(
        f"n = {lo}" if lo == hi else f"n = {lo}..{hi}" for lo, hi in ranges)


def _below(d) -> str:
    """A break-even d; inf (None in JSON): the star pays at every d."""
    return "every d" if d is None or math.isinf(d) else f"{d:.3g}"


def markdown_table(result: dict) -> str:
    net = NetworkModel(**{k: v for k, v in result["network"].items() if k != "work"},
                       work=PlaneWork(**result["network"].get("work", {})))
    lines = [(f"**Round time by data plane** (network model: {net.describe().split(', d=')[0]}; "
              f"collective accumulators {net.acc_bytes} B per value; compute = M-SGC FR's mean simulated "
              f"round on a synthetic Lambda trace, {result['rounds']} rounds; predictions, not "
              "measurements):"),
             ""]
    for d in result["params"]:
        lines += [f"d = {d:.4g} parameters, {net.bytes} B each:", "",
                  ("| n | compute s | star comm s | star work s | collective comm s | collective work s | "
                   "star round s | collective round s | star / collective | links only | star pays below d | "
                   "coordinator bytes star / collective |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in result["rows"] if r["params"] == d):
            star, coll = r["star"], r["collective"]
            links = r.get("links_only_star_over_collective")
            lines.append(f"| {r['n']} | {r['compute_s_per_round']:.3f} | {star['comm_s_per_round']:.4g} | "
                         f"{star.get('work_s_per_round', 0.0):.4g} | {coll['comm_s_per_round']:.4g} | "
                         f"{coll.get('work_s_per_round', 0.0):.4g} | {star['round_s']:.4g} | "
                         f"{coll['round_s']:.4g} | "
                         f"{r['star_over_collective']:.2f} | "
                         f"{'-' if links is None else f'{links:.2f}'} | "
                         f"{_below(r['star_pays_below_params'])} | "
                         f"{star['coordinator_bytes_per_round']:.3g} / "
                         f"{coll['coordinator_bytes_per_round']:.3g} |")
        key = f"{d:g}"
        bare = result.get("star_pays_links_only", {}).get(key)
        lines += ["", (f"The star pays (its round costs no more than the collective's) for "
                      f"{_pays_text(result['star_pays'][key])}"
                       + ("." if bare is None else f"; with the links alone, for {_pays_text(bare)}.")), ""]
    return "\n".join(lines).rstrip()


def plot(result: dict, out_dir) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    params = result["params"]
    fig, axes = plt.subplots(1, len(params), figsize=(5.5 * len(params), 4.2), squeeze=False)
    for ax, d in zip(axes[0], params):
        rows = sorted((r for r in result["rows"] if r["params"] == d), key=lambda r: r["n"])
        ns = [r["n"] for r in rows]
        ax.loglog(ns, [r["star"]["round_s"] for r in rows], "o-", label="star round")
        ax.loglog(ns, [r["collective"]["round_s"] for r in rows], "s-", label="collective round")
        ax.loglog(ns, [r["compute_s_per_round"] for r in rows], "k:", label="compute (both)")
        ax.set_xlabel("workers n")
        ax.set_ylabel("seconds per round")
        ax.set_title(f"d = {d:.3g} parameters")
        ax.legend(fontsize=8)
    fig.suptitle("round time by data plane (network model)")
    fig.tight_layout()
    path = Path(out_dir) / "bench_scale_network.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
