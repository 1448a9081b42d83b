"""The live planes' rounds (``benchmarks/netns_live.py``) against the network model with its work
terms (:class:`gcode.sim.plane_work.PlaneWork`), calibrated in place.

A live round is the run's compute plus, on the collective plane, the control round trip with the
coordinator's n calls, the ring allreduce and every worker's fold, replica step and check share;
on the star, the parameters out and the n gradients in, then the coordinator's sum of n messages
and its step (formulas in :mod:`gcode.sim.network`). The links' terms (α, β, the shared host's γ,
α_c, β_c, the control α) come from the calibration transfers of the same link rate
(``benchmarks/network_calibration.py``); the compute is the run's own measured compute per round,
as the simulator's compute would be.

The work terms are calibrated **in place**, from the live runs' own phases (``plane_s_per_decode``
on the collective, ``timings_s_per_round`` on the star), because on this machine the n emulated
nodes, their raylets and other people's work share two cores, so a dedicated core's costs
(``benchmarks/work_calibration.py``) do not describe them: per parameter and per core-equivalent
(a phase's seconds times the worker's share of the cores, min(1, cores/n)), and the coordinator's
calls as what a collective round spends beyond compute, its phases and the control α, per worker.
Each run is predicted out of sample: with the terms calibrated on the run at the **other n** of
the same link rate (calibrate at one scale, predict another: the shares carry the terms from n to
n), and with those of the **other link rate's** runs (the work should not depend on the link);
and, for comparison, with the links alone (no work terms: the model before them). Only runs with
one worker per node give terms; a run with k workers per node (issue 26's four nodes with two
workers each) is predicted with those of every one-per-node run at its rate (or the other rate),
and the model's ``workers_per_node`` (:class:`gcode.sim.network.NetworkModel`).
"""

from __future__ import annotations

import statistics

from network_terms import TARGET, model_for

PLANES = ("star", "collective")


def share(entry: dict) -> float:
    """A worker's share of the machine's cores (1: a core of its own)."""
    return min(1.0, entry["cpus"] / entry["workers"])


def work_samples(entry: dict, fit: dict) -> dict:
    """One run pair's work terms: per parameter, per core-equivalent (collective) and per
    parameter (the star's coordinator, which works while the workers wait for it)."""
    coll, star = entry["runs"]["collective"], entry["runs"]["star"]
    d, n, sh = coll["num_params"], entry["workers"], share(entry)
    ph = coll["plane_s_per_decode"]
    rounds = coll["runtime_s"] / coll["rounds"]
    beyond = rounds - coll["compute_s_per_round"] - sum(ph.values()) - 2 * fit["control_alpha"]
    t = star["timings_s_per_round"]
    return {"fold_fp32_s_per_param": ph["fold"] * sh / d, "step_s_per_param": ph["step"] * sh / d,
            "check_s_per_param": ph["check"] * 10 * sh / d, "call_s": max(0.0, beyond) / n,
            "coord_fold_s_per_param": t["fold"] / (n * d), "coord_step_s_per_param": t["step"] / d}


def star_phases(run: dict) -> dict:
    """The star coordinator's own work per round, by phase."""
    return {k: run["timings_s_per_round"][k] for k in ("issue", "dispatch", "fetch", "fold", "step")}


def pooled(samples: list[dict]) -> dict:
    """The median of each term over ``samples``."""
    return {k: float(statistics.median(s[k] for s in samples)) for k in samples[0]}


def per_node(entry: dict) -> int:
    """Workers sharing a node's link (1: one per node)."""
    return max(1, -(-entry["workers"] // entry["nodes"]))


def predict_run(entry: dict, fit: dict, terms: dict | None) -> dict:
    """Each plane's predicted round (compute + the model's round), for ``terms`` (None: links only)."""
    from gcode.sim.plane_work import PlaneWork
    out = {}
    for plane in PLANES:
        run = entry["runs"][plane]
        work = PlaneWork(**terms, cpu_share=share(entry), optimizer="adam") if terms else PlaneWork()
        net = model_for(fit, run["num_params"], work=work, workers_per_node=per_node(entry))
        n = entry["workers"]
        model = float(net.star_round(n) if plane == "star" else net.collective_round(n))
        out[plane] = run["compute_s_per_round"] + model
    return out


def live_rows(live: dict, fits: dict) -> dict:
    """Predicted against measured for every live run of the one-call-per-round code. The terms come
    from runs with one worker per node only: for such a run, the other n at its rate, or the other
    rate; for a run with k workers per node, every one-per-node run at its rate, or at the other."""
    entries = {k: e for k, e in live["runs"].items() if e.get("code") and e["rate"] in fits}
    donors = {k: e for k, e in entries.items() if per_node(e) == 1}
    samples = {k: work_samples(e, fits[e["rate"]]) for k, e in donors.items()}
    rows, terms = [], {}
    for key, e in sorted(entries.items(), key=lambda kv: (kv[1]["rate"] != "1gbit", per_node(kv[1]),
                                                          kv[1]["workers"])):
        fit = fits[e["rate"]]
        by = {"other_n": [samples[k] for k, o in donors.items() if o["rate"] == e["rate"] and k != key],
              "other_rate": [samples[k] for k, o in donors.items() if o["rate"] != e["rate"]]}
        terms[key] = {what: pooled(found) if found else None for what, found in by.items()}
        predicted = {what: predict_run(e, fit, t) if t else None for what, t in terms[key].items()}
        predicted["links_only"] = predict_run(e, fit, None)
        for plane in PLANES:
            run = e["runs"][plane]
            measured = run["runtime_s"] / run["rounds"]
            row = {"key": key, "rate": e["rate"], "n": e["workers"], "per_node": per_node(e), "plane": plane,
                   "measured_round_s": measured, "compute_s_per_round": run["compute_s_per_round"],
                   "load_average_before": e["load_average_before"][0], "jobs": e["jobs"],
                   "phases_s": run.get("plane_s_per_decode") or star_phases(run)}
            for what, out in predicted.items():
                row[f"{what}_round_s"] = None if out is None else out[plane]
                row[f"{what}_ratio"] = None if out is None else out[plane] / measured
            rows.append(row)
    within = {what: {plane: sum(1 for r in rows if r["plane"] == plane and r[f"{what}_ratio"] is not None
                                and abs(r[f"{what}_ratio"] - 1) <= TARGET) for plane in PLANES}
              for what in ("other_n", "other_rate", "links_only")}
    return {"rows": rows, "terms": terms, "terms_pooled": pooled(list(samples.values())), "target": TARGET,
            "within_target": within, "runs": {p: sum(r["plane"] == p for r in rows) for p in PLANES}}


def repeat_rows(repeats: dict, live: dict, fits: dict) -> list[dict]:
    """Repeats of settings measured in ``live`` (a second ``netns_live.py --out`` file), each
    predicted with the terms its setting's first run was predicted with: how much of a miss is
    the machine's run-to-run variation."""
    rows = []
    for key, e in repeats["runs"].items():
        terms = live["terms"].get(key, {}).get("other_n")
        if not terms or e["rate"] not in fits:
            continue
        predicted = predict_run(e, fits[e["rate"]], terms)
        for plane in PLANES:
            run = e["runs"][plane]
            first = next(r for r in live["rows"] if r["key"] == key and r["plane"] == plane)
            measured = run["runtime_s"] / run["rounds"]
            rows.append({"key": key, "rate": e["rate"], "n": e["workers"], "per_node": per_node(e),
                         "plane": plane, "measured_round_s": measured,
                         "first_round_s": first["measured_round_s"],
                         "compute_s_per_round": run["compute_s_per_round"],
                         "predicted_round_s": predicted[plane],
                         "predicted_ratio": predicted[plane] / measured,
                         "first_ratio": first["other_n_ratio"],
                         "date": e["date"], "load_average_before": e["load_average_before"][0],
                         "phases_s": run.get("plane_s_per_decode") or star_phases(run)})
    return rows


def repeats_markdown(rows: list[dict]) -> str:
    lines = [("| link | n | workers per node | plane | first run ms | repeat ms | repeat's compute ms | "
              "predicted ms (the first run's terms) | predicted / repeat | predicted / first run |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['rate']} | {r['n']} | {r['per_node']} | {r['plane']} | "
                     f"{r['first_round_s'] * 1e3:,.0f} | {r['measured_round_s'] * 1e3:,.0f} | "
                     f"{r['compute_s_per_round'] * 1e3:,.0f} | {r['predicted_round_s'] * 1e3:,.0f} | "
                     f"{r['predicted_ratio']:.2f} | {_ratio(r['first_ratio'])} |")
    return "\n".join(lines)


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(live: dict) -> str:
    """The live rounds table and the in-place work terms."""
    lines = [("| link | n | workers per node | plane | measured round ms | of it, compute ms | predicted ms "
              "(other runs' terms at its rate) | predicted / measured | with the other rate's terms | "
              "links only |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in live["rows"]:
        pred = "-" if r["other_n_round_s"] is None else f"{r['other_n_round_s'] * 1e3:,.0f}"
        lines.append(f"| {r['rate']} | {r['n']} | {r.get('per_node', 1)} | {r['plane']} | "
                     f"{r['measured_round_s'] * 1e3:,.0f} | "
                     f"{r['compute_s_per_round'] * 1e3:,.0f} | {pred} | {_ratio(r['other_n_ratio'])} | "
                     f"{_ratio(r['other_rate_ratio'])} | {_ratio(r['links_only_ratio'])} |")
    p, w = live["terms_pooled"], live["within_target"]

    def within(what):
        return ", ".join(f"{plane} {w[what][plane]} of {live['runs'][plane]}" for plane in PLANES)
    lines += ["", (f"Within {live['target']:.0%}: with the terms of the other runs at its rate (one worker "
                   f"per node: the other n) {within('other_n')}; with the "
                   f"other rate's {within('other_rate')}; links only {within('links_only')}. The work terms, "
                   f"median over the one-per-node runs (seconds per parameter per core-equivalent, "
                   f"Adam): fold "
                   f"{p['fold_fp32_s_per_param'] * 1e9:.2f} ns (fp32), replica step "
                   f"{p['step_s_per_param'] * 1e9:.1f} ns, check "
                   f"{p['check_s_per_param'] * 1e9:.1f} ns (every 10th decode); the coordinator's "
                   f"call {p['call_s'] * 1e3:.1f} ms per worker; on the star's coordinator, the sum "
                   f"{p['coord_fold_s_per_param'] * 1e9:.2f} ns per parameter per message and the step "
                   f"{p['coord_step_s_per_param'] * 1e9:.1f} ns per parameter.")]
    return "\n".join(lines)
