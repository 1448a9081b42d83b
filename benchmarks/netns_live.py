"""Both live data planes across emulated nodes: ``gcode train`` on the star and on the collective
plane, one worker per node, each node's link limited by tc, and each round's time measured against
the network model's prediction.

    cluster/netns.sh --nodes 8 --rate 1gbit --start-batch 2 -- .venv/bin/python benchmarks/netns_live.py

Each plane trains mlp-wide (one model, uncoded, no injection) for ``--jobs`` rounds with 8 workers.
Measured per round: the run's wall time over its rounds, and of it the workers' compute (the run's
``compute_s_per_round``). Predicted: that compute plus the plane's communication per round by
:mod:`gcode.sim.network` with this link rate's α, β fitted in
``benchmarks/results/network_calibration.json`` (benchmarks/network_calibration.py), as the
simulator adds them. The model counts neither the star's decode and step on the coordinator nor
the collective's fold and step on the workers; what the live loop spends beyond compute and the
modelled communication shows as the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PLANES = ("star", "collective")
#: bench versus's mlp-wide (gcode/bench/versus.py): 784-4096-10, 3.26M parameters, 13 MB of fp32
MLP_WIDE = ("--model", "mlp", "--model-param", "hidden=4096", "--dataset", "synthetic", "--dataset-param",
            "num_features=784", "--dataset-param", "num_classes=10", "--num-samples", "8192")


def train(plane: str, workers: int, jobs: int) -> dict:
    cmd = [sys.executable, "-m", "gcode", "train", "--address", os.environ["RAY_ADDRESS"],
           "--workers", str(workers), *MLP_WIDE, "--scheme", "uncoded", "--jobs", str(jobs),
           "--batch-size", "512", "--data-plane", plane, "--json", "--quiet"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
    if res.returncode != 0:
        raise SystemExit(f"netns_live.py: gcode train on the {plane} plane exited {res.returncode}:\n"
                         f"{res.stderr[-3000:]}")
    out = json.loads([line for line in res.stdout.splitlines() if line.startswith("{")][-1])
    keep = ("runtime_s", "rounds", "compute_s_per_round", "overhead_s_per_round", "timings_s_per_round",
            "coordinator_bytes_per_round", "data_plane", "transport", "node_ips", "num_params", "final_loss",
            "param_checksum", "decoded_jobs")
    return {**{k: out.get(k) for k in keep}, "wall_s": time.perf_counter() - t0}


def predict(run: dict, fit: dict, n: int) -> dict:
    """The simulator's round: measured compute plus the plane's modelled communication."""
    from gcode.sim.network import NetworkModel
    net = NetworkModel(alpha=fit["ring"]["alpha"], beta=fit["ring"]["beta"], coord_alpha=fit["star"]["alpha"],
                       coord_beta=fit["star"]["beta"], control_alpha=fit["control_alpha"],
                       params=run["num_params"])
    comm = float(net.star_round(n) if run["data_plane"] == "star" else net.collective_round(n))
    measured = run["runtime_s"] / run["rounds"]
    predicted = run["compute_s_per_round"] + comm
    return {"measured_round_s": measured, "compute_s_per_round": run["compute_s_per_round"],
            "predicted_comm_s": comm, "predicted_round_s": predicted,
            "predicted_over_measured": predicted / measured}


def markdown(entry: dict) -> str:
    nodes = entry.get("nodes", entry["workers"])
    lines = [(f"**{entry['rate']}** per link, {entry['workers']} workers on {nodes} nodes, "
              f"mlp-wide, uncoded, {entry['jobs']} rounds each:"), "",
             ("| plane | round ms | compute ms | predicted round ms | predicted / measured | "
              "coordinator bytes/round |"),
             "|---|---|---|---|---|---|"]
    for plane in PLANES:
        run, p = entry["runs"][plane], entry["prediction"][plane]
        lines.append(f"| {plane} | {p['measured_round_s'] * 1e3:.0f} | "
                     f"{p['compute_s_per_round'] * 1e3:.0f} | {p['predicted_round_s'] * 1e3:.0f} | "
                     f"{p['predicted_over_measured']:.2f} | "
                     f"{run['coordinator_bytes_per_round']:,.0f} |")
    star, coll = (entry["prediction"][p]["measured_round_s"] for p in PLANES)
    lines += ["", f"The collective plane's round is {star / coll:.2f}x faster than the star's."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=12)
    p.add_argument("--workers", type=int, help="gcode workers (default: one per worker node); more than the "
                   "nodes puts several on a node, sharing its link, which the model does not describe")
    p.add_argument("--calibration", default=str(REPO / "benchmarks" / "results" / "network_calibration.json"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "netns_live.json"))
    args = p.parse_args(argv)
    rate, ips = os.environ.get("GCODE_NETNS_RATE"), os.environ.get("GCODE_NETNS_NODE_IPS", "").split()
    if not rate or not ips:
        print("netns_live.py: run me under cluster/netns.sh (see the docstring)", file=sys.stderr)
        return 2
    fit = json.loads(Path(args.calibration).read_text())["report"]["fits"][rate]
    load = os.getloadavg()
    workers = args.workers or len(ips)
    runs = {plane: train(plane, workers, args.jobs) for plane in PLANES}
    entry = {"rate": rate, "nodes": len(ips), "workers": workers, "jobs": args.jobs,
             "date": time.strftime("%Y-%m-%d"),
             "cpus": os.cpu_count(), "load_average_before": load, "load_average_after": os.getloadavg(),
             "fit": fit, "runs": runs,
             "prediction": {plane: predict(run, fit, workers) for plane, run in runs.items()}}
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    result["what"] = ("gcode train on both data planes across emulated nodes (cluster/netns.sh), round time "
                      "against the calibrated network model (benchmarks/netns_live.py)")
    key = rate if workers == len(ips) else f"{rate}-{len(ips)}nodes-{workers}workers"
    result["runs"][key] = entry
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(entry))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
