"""``gcode bench scale --network``: each data plane's round time as n grows, and where the star
stops paying, under the network model of :mod:`gcode.sim.network`.

For n = 8 … 1,024 workers, M-SGC (FR code, the paper's parameters scaled to n) is simulated on
a synthetic trace resampled from the bundled Lambda trace (:func:`gcode.bench.scale.synthetic_trace`):
its mean round is the compute per round, the same on both planes. Each plane's communication per
round is then added for d = 11.2M (ResNet-18) and 10⁹ parameters: the star's parameters out and
gradients in through the coordinator's link, the collective's control round trip and ring
allreduce (formulas in :mod:`gcode.sim.network`). Where the star stops paying depends on the
network alone (compute cancels): :func:`gcode.sim.network.star_pays` scans n = 2 … 100,000.

These are predictions of the model, not measurements; ``cluster/netns.sh`` measures real links.
"""

from __future__ import annotations

from pathlib import Path

from ..codes import make_scheme
from ..sim import PaperPolicy, simulate
from ..sim.load_model import LoadModel
from ..sim.network import NetworkModel, star_pays
from ..sim.paper import PAPER_LOAD_SLOPE, default_params
from .scale import synthetic_trace

NS = (8, 16, 32, 64, 128, 256, 512, 1024)
PARAMS = (11.2e6, 1e9)
#: the bench's default network: 10 Gbit/s worker links, a coordinator on a 100 Gbit/s link
DEFAULT_NETWORK = NetworkModel(alpha=50e-6, beta=1.25e9, coord_beta=12.5e9)
SCHEME = "msgc"


def _compute(n: int, rounds: int, loads: LoadModel) -> dict:
    params = {**default_params(SCHEME, n), "gc_code": "fr"}
    trace = synthetic_trace(rounds, n)
    scheme = make_scheme(SCHEME, n=n, jobs=rounds - 4, **params)
    result = simulate(scheme, trace, PaperPolicy(1.0), loads)
    return {"params": params, "task_rounds": result.task_rounds, "decoded_jobs": result.decoded_jobs,
            "compute_s": result.runtime_s, "compute_s_per_round": result.runtime_s / result.task_rounds}


def run_network_bench(model: NetworkModel = DEFAULT_NETWORK, ns=NS, params=PARAMS, rounds: int = 100,
                      progress=None) -> dict:
    """Rows (n, d) with each plane's communication and round time; star_pays per d."""
    loads = LoadModel("additive", PAPER_LOAD_SLOPE)
    rows = []
    for n in ns:
        compute = _compute(n, rounds, loads)
        for d in params:
            net = model.with_params(d)
            costs = net.run_costs(n, compute["task_rounds"], compute["decoded_jobs"], compute["compute_s"])
            per_round = {plane: {"comm_s_per_round": c["comm_s_per_round"],
                                 "round_s": c["runtime_s"] / compute["task_rounds"],
                                 "coordinator_bytes_per_round": c["coordinator_bytes_per_round"]}
                         for plane, c in costs.items()}
            rows.append({"n": n, "params": d, "scheme": SCHEME, "scheme_params": compute["params"],
                         "compute_s_per_round": compute["compute_s_per_round"], **per_round,
                         "star_pays_below_params": net.break_even_params(n),
                         "star_over_collective":
                             per_round["star"]["round_s"] / per_round["collective"]["round_s"]})
        if progress is not None:
            progress(1)
    return {"network": model.as_dict(), "ns": list(ns), "params": list(params), "rounds": rounds,
            "rows": rows, "star_pays": {f"{d:g}": star_pays(model.with_params(d)) for d in params}}


def _pays_text(ranges) -> str:
    return "never (n >= 2)" if not ranges else ", ".join(
        f"n = {lo}" if lo == hi else f"n = {lo}..{hi}" for lo, hi in ranges)


def markdown_table(result: dict) -> str:
    net = NetworkModel(**{k: result["network"][k] for k in ("alpha", "beta", "coord_alpha", "coord_beta",
                                                            "params", "bytes", "control_bytes")})
    lines = [(f"**Round time by data plane** (network model: {net.describe().split(', d=')[0]}; "
             f"compute = M-SGC FR's mean simulated round on a synthetic Lambda trace, {result['rounds']} "
             f"rounds; predictions, not measurements):"), ""]
    for d in result["params"]:
        lines += [f"d = {d:.4g} parameters, {net.bytes} B each:", "",
                  ("| n | compute s | star comm s | collective comm s | star round s | collective round s "
                  "| star / collective | star pays below d | coordinator bytes star / collective |"),
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in result["rows"] if r["params"] == d):
            star, coll = r["star"], r["collective"]
            lines.append(f"| {r['n']} | {r['compute_s_per_round']:.3f} | {star['comm_s_per_round']:.4g} | "
                         f"{coll['comm_s_per_round']:.4g} | {star['round_s']:.4g} | {coll['round_s']:.4g} | "
                         f"{r['star_over_collective']:.2f} | {r['star_pays_below_params']:.3g} | "
                         f"{star['coordinator_bytes_per_round']:.3g} / "
                         f"{coll['coordinator_bytes_per_round']:.3g} |")
        lines += ["", (f"The star pays (its round costs no more than the collective's) for "
                      f"{_pays_text(result['star_pays'][f'{d:g}'])}."), ""]
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
