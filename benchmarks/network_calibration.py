"""The network model calibrated on measured links, and its prediction of both planes' round
communication against measured rounds at n = 4 and 8 workers.

Measure (one Ray worker node per worker, the driver on the head node as the coordinator), once
per setting; each run adds its setting to ``--out``::

    cluster/netns.sh --nodes 8 --rate 1gbit -- .venv/bin/python benchmarks/network_calibration.py measure
    cluster/netns.sh --nodes 8 --rate 10gbit -- .venv/bin/python benchmarks/network_calibration.py measure
    cluster/local.sh --nodes 8 --hold      # then, with the RAY_ADDRESS it prints:
    .venv/bin/python benchmarks/network_calibration.py measure --setting loopback

then ``network_calibration.py report`` fits, predicts and writes the JSON's ``report``, a markdown
table and a PNG. Each setting measures two kinds of thing, on the same cluster:

* **calibration transfers**, from which α and β are fitted (:func:`gcode.sim.network.fit_link`):
  a gloo ring allreduce among the collective plane's group at 4 sizes and n = 4, 8 (the workers'
  α, β); the star's transfers through Ray's object store, each timed as a round meets it (from
  the put into the sender's object store to the receiver's copy): k = 1, n/2, n workers' arrays
  gathered by the driver and one array of the driver's fetched by n workers, at 3 sizes (the
  coordinator's α_c, β_c); a control round trip (a Ray actor call with a few bytes each way, the
  control messages' α);
* **rounds**, which the fitted model then predicts: a star round (the driver puts the parameters,
  each of n workers fetches them and returns a gradient of the same size, the driver gets all n)
  and a collective round (the driver's call to each worker carries the coefficients; the worker
  folds its kept result, the group allreduces, and each replies with its done report: the
  model's two control messages and one allreduce), at d = 1M and 3.25M fp32 parameters
  (mlp-wide), n = 4 and 8. Workers do no compute: a round here is its communication alone.

The rounds are not among the fitted samples: a round composes several transfers with Ray's
scheduling between them, which the model must get right from the parts. Nominal: the model at
the link's rate with α = 0, for comparison (loopback has no nominal rate). The ring is fitted
with the shared host's term (the bytes all nodes send together, ``host_beta``: n emulated nodes
share this machine's CPUs) and without it (``ring_links_only``), both shown.

The work terms (``gcode.sim.plane_work``): ``network_calibration.py work`` measures a dedicated
core's fold, replica step and check per parameter (``benchmarks/work_calibration.py``) into the
JSON's ``work``; ``report`` also predicts the live runs of ``benchmarks/netns_live.py``
(``--live``) with the work terms calibrated in place from their phases
(``benchmarks/network_live_model.py``), into ``report.live``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
from network_terms import TARGET, model_for

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MB = 1e6
RATE_UNITS = {"gbit": 1e9, "mbit": 1e6, "kbit": 1e3, "bit": 1.0}


def median(xs) -> float:
    return float(statistics.median(xs))


# ------------------------------------------------------------------------ report
def rate_bytes(rate: str | None) -> float | None:
    if not rate:
        return None
    number = rate.rstrip("abcdefghijklmnopqrstuvwxyz")
    return float(number) * RATE_UNITS[rate[len(number):]] / 8


def calibrate(entry: dict) -> dict:
    """α, β of the workers' links (ring) with the shared host's γ (the bytes all ranks send
    together, 2(n−1)·D: ``host_beta``), and without it (``ring_links_only``, as before that term);
    α_c, β_c of the coordinator's link (star transfers); the control messages' α; fitted to this
    setting's calibration transfers."""
    from gcode.sim.network import fit_link
    ring_samples = [(2 * (r["n"] - 1) / r["n"] * r["bytes"], r["seconds"]) for r in entry["ring"]]
    steps = [2 * (r["n"] - 1) for r in entry["ring"]]
    host_bytes = [2 * (r["n"] - 1) * r["bytes"] for r in entry["ring"]]
    ring = fit_link(ring_samples, steps=steps, host_bytes=host_bytes)
    links_only = fit_link(ring_samples, steps=steps)
    star_samples = [(r["k"] * r["bytes_each"], r["seconds"]) for r in entry["gather"] + entry["scatter"]]
    star = fit_link(star_samples)
    control = median([r["seconds"] for r in entry["control"]]) / 2  # a round trip is two messages
    return {"ring": ring, "ring_links_only": links_only, "star": star, "control_alpha": control}


def json_safe(node):
    """``node`` with every inf as None (strict JSON has no infinity)."""
    if isinstance(node, float) and math.isinf(node):
        return None
    if isinstance(node, dict):
        return {k: json_safe(v) for k, v in node.items()}
    if isinstance(node, list):
        return [json_safe(v) for v in node]
    return node


def measured_communication(row: dict) -> float:
    """A round's communication: the star's whole round (the driver gets the gradients and does
    not decode them); the collective's round less its folds' critical path (the fold is the
    worker's compute, as the star's decode is the coordinator's: the model counts neither)."""
    if "phases" not in row:
        return row["seconds"]
    spans = [p.get("fold_span_s", 0.0) for p in row["phases"]]
    return median([t - f for t, f in zip(row["seconds_all"], spans)])


def predict(entry: dict, fit: dict) -> list[dict]:
    from gcode.sim.network import NetworkModel
    nominal_rate = rate_bytes(entry.get("rate"))
    rows = []
    for r in entry["rounds"]:
        net, old = model_for(fit, r["params"]), model_for(fit, r["params"], links_only=True)
        n = r["n"]
        predicted = float(net.star_round(n) if r["plane"] == "star" else net.collective_round(n))
        links_only = float(old.star_round(n) if r["plane"] == "star" else old.collective_round(n))
        nominal = None
        if nominal_rate:
            nom = NetworkModel(alpha=0.0, beta=nominal_rate, params=r["params"], control_bytes=64)
            nominal = float(nom.star_round(n) if r["plane"] == "star" else nom.collective_round(n))
        comm = measured_communication(r)
        rows.append({"setting": entry["setting"], "plane": r["plane"], "n": n, "params": r["params"],
                     "measured_round_s": r["seconds"],
                     "fold_s": r["seconds"] - comm if "phases" in r else 0.0,
                     "measured_s": comm, "predicted_s": predicted,
                     "error": predicted / comm - 1, "links_only_s": links_only,
                     "links_only_error": links_only / comm - 1, "nominal_s": nominal,
                     "nominal_error": None if nominal is None else nominal / comm - 1})
    return rows


def report(result: dict) -> dict:
    order = [s for s in ("loopback", "1gbit", "10gbit") if s in result["settings"]] + \
        [s for s in result["settings"] if s not in ("loopback", "1gbit", "10gbit")]
    fits, rows = {}, []
    for s in order:
        fits[s] = calibrate(result["settings"][s])
        rows += predict(result["settings"][s], fits[s])
    within = [abs(r["error"]) <= TARGET for r in rows]
    per_setting = {s: sum(abs(r["error"]) <= TARGET for r in rows if r["setting"] == s) for s in order}
    return {"order": order, "fits": fits, "rows": rows, "target": TARGET,
            "within_target_by_setting": per_setting,
            "within_target": int(sum(within)), "rounds": len(rows),
            "max_abs_error": max(abs(r["error"]) for r in rows)}


def _rate_mb(rate: float | None) -> str:
    return "-" if rate is None or math.isinf(rate) else f"{rate / MB:,.0f}"


def markdown_table(result: dict) -> str:
    rep = result["report"]
    lines = [("**Fitted links** (non-negative least squares on relative error; the ring with the shared "
              "host's term, and in brackets without it; `-`: the term explains nothing here):"), "",
             ("| setting | ring α ms | ring β MB/s | shared host γ MB/s | star α_c ms | star β_c MB/s | "
              "control α ms | fit rel. RMS ring / star |"),
             "|---|---|---|---|---|---|---|---|"]
    for s in rep["order"]:
        f = rep["fits"][s]
        ring, old = f["ring"], f.get("ring_links_only", f["ring"])
        lines.append(f"| {s} | {ring['alpha'] * 1e3:.2f} ({old['alpha'] * 1e3:.2f}) | "
                     f"{_rate_mb(ring['beta'])} ({_rate_mb(old['beta'])}) | "
                     f"{_rate_mb(ring.get('host_beta'))} | "
                     f"{f['star']['alpha'] * 1e3:.2f} | {_rate_mb(f['star']['beta'])} | "
                     f"{f['control_alpha'] * 1e3:.2f} | {ring['rel_rms']:.2f} ({old['rel_rms']:.2f}) / "
                     f"{f['star']['rel_rms']:.2f} |")
    lines += ["", ("**Round communication, predicted against measured** (median of each setting's repeats; "
              "a round here moves data and control only; the collective's fold is the workers' compute, "
               "apart):"), "",
              ("| setting | plane | n | d | measured round ms | of it, fold ms | measured communication ms | "
               "predicted ms | predicted / measured | without the host term | nominal ms |"),
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        nominal = "-" if r["nominal_s"] is None else f"{r['nominal_s'] * 1e3:.1f}"
        fold = f"{r['fold_s'] * 1e3:.1f}" if r["plane"] == "collective" else "-"
        old = r.get("links_only_error", r["error"])
        lines.append(f"| {r['setting']} | {r['plane']} | {r['n']} | {r['params'] / 1e6:.3g}M | "
                     f"{r['measured_round_s'] * 1e3:.1f} | {fold} | {r['measured_s'] * 1e3:.1f} | "
                     f"{r['predicted_s'] * 1e3:.1f} | {1 + r['error']:.2f} | {1 + old:.2f} | {nominal} |")
    by = "; ".join(f"{s} {k} of {sum(r['setting'] == s for r in rep['rows'])}"
                   for s, k in rep["within_target_by_setting"].items())
    lines += ["", (f"{rep['within_target']} of {rep['rounds']} rounds predicted within "
                  f"{rep['target']:.0%} ({by}); the largest error {rep['max_abs_error']:.0%}.")]
    if "live" in rep:
        from network_live_model import markdown as live_markdown
        lines += ["", ("**Live rounds** (`gcode train`, benchmarks/netns_live.py: mlp-wide, uncoded, one "
                       "or two workers per node; predicted = the run's compute + the model's round with the "
                       "work terms calibrated in place, benchmarks/network_live_model.py):"), "",
                  live_markdown(rep["live"])]
        if rep["live"].get("repeats"):
            from network_live_model import repeats_markdown
            lines += ["", "**Repeats** (the same setting again: benchmarks/results/netns_live_repeat.json):",
                      "",
                      repeats_markdown(rep["live"]["repeats"])]
    if "work" in result:
        lines += ["", "**A dedicated core's work terms** (benchmarks/work_calibration.py):", "",
                  work_table(result["work"])]
    return "\n".join(lines)


def plot(result: dict, out_dir: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rep = result["report"]
    fig, axes = plt.subplots(1, len(rep["order"]), figsize=(4.6 * len(rep["order"]), 4.2), squeeze=False)
    for ax, s in zip(axes[0], rep["order"]):
        rows = [r for r in rep["rows"] if r["setting"] == s]
        labels = [f"{r['plane'][:4]}\nn={r['n']}\n{r['params'] / 1e6:.3g}M" for r in rows]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["measured_s"] * 1e3 for r in rows], 0.4, label="measured communication")
        ax.bar(x + 0.2, [r["predicted_s"] * 1e3 for r in rows], 0.4, label="model (fitted)")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("ms per round (communication)")
        ax.set_title(s)
        ax.legend(fontsize=8)
    fig.suptitle("round communication: network model against measured")
    fig.tight_layout()
    path = out_dir / "network_calibration.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cmd_work(args) -> int:
    """A dedicated core's work terms (benchmarks/work_calibration.py) into the JSON's ``work``."""
    import os
    import time

    import work_calibration
    out = Path(args.out)
    result = json.loads(out.read_text())
    load = os.getloadavg()
    work = work_calibration.measure(args.repeats)
    result["work"] = {**work, "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
                      "load_average_before": load, "load_average_after": os.getloadavg(),
                      "terms": {opt: work_calibration.terms(work, opt) for opt in ("adam", "sgd")}}
    out.write_text(json.dumps(json_safe(result), indent=2) + "\n")
    print(work_table(result["work"]))
    return 0


def work_table(work: dict) -> str:
    """A dedicated core's work terms, per optimizer."""
    lines = [("| optimizer | fold fp32 ns | fold fp64 ns | replica step ns | check ns (every 10th decode) |"),
             "|---|---|---|---|---|"]
    for opt, t in work["terms"].items():
        lines.append(f"| {opt} | {t['fold_fp32_s_per_param'] * 1e9:.2f} | "
                     f"{t['fold_fp64_s_per_param'] * 1e9:.2f} | {t['step_s_per_param'] * 1e9:.2f} | "
                     f"{t['check_s_per_param'] * 1e9:.2f} |")
    load = ", ".join(f"{v:.1f}" for v in work["load_average_before"])
    lines += ["", (f"Seconds per parameter on one core (one torch thread), fastest of {work['repeats']}, "
                   f"{work['date']}, load average {load} on {work['cpus']} CPUs.")]
    return "\n".join(lines)


def cmd_report(args) -> int:
    out = Path(args.out)
    result = json.loads(out.read_text())
    result["report"] = report(result)
    live, repeats = Path(args.live), Path(args.live).with_name("netns_live_repeat.json")
    if live.exists():
        from network_live_model import live_rows, repeat_rows
        fits = result["report"]["fits"]
        result["report"]["live"] = live_rows(json.loads(live.read_text()), fits)
        if repeats.exists():
            result["report"]["live"]["repeats"] = repeat_rows(json.loads(repeats.read_text()),
                                                              result["report"]["live"], fits)
    result = json_safe(result)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown_table(result)
    out.with_suffix(".md").write_text(table + "\n")
    png = plot(result, out.parent)
    print(table)
    print(f"\nwrote {out}, {out.with_suffix('.md')}, {png}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="measure one setting (under cluster/netns.sh or cluster/local.sh)")
    m.add_argument("--setting", help="the setting's name (default: the netns link rate)")
    m.add_argument("--repeats", type=int, default=5)
    r = sub.add_parser("report", help="fit, predict, write the table and the plot")
    r.add_argument("--live", default=str(REPO / "benchmarks" / "results" / "netns_live.json"),
                   help="benchmarks/netns_live.py's results, predicted with the work terms")
    w = sub.add_parser("work", help="a dedicated core's fold, step and check per parameter")
    w.add_argument("--repeats", type=int, default=15)
    for q in (m, r, w):
        q.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "network_calibration.json"))
    args = p.parse_args(argv)
    if args.command == "measure":
        from network_measure import cmd_measure
        return cmd_measure(args)
    return cmd_work(args) if args.command == "work" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
