"""Both live data planes across emulated nodes: ``gcode train`` on the star and on the collective
plane, one worker per node, each node's link limited by tc, and each round's time measured against
the network model's prediction.

    cluster/netns.sh --nodes 8 --rate 1gbit --start-batch 2 -- .venv/bin/python benchmarks/netns_live.py

Each plane trains mlp-wide (one model, uncoded, no injection) for ``--jobs`` rounds with 8 workers.
Measured per round: the run's wall time over its rounds, and of it the workers' compute (the run's
``compute_s_per_round``). Predicted: that compute plus the plane's communication per round by
:mod:`gcode.sim.network` with this link rate's α, β fitted in
``benchmarks/results/network_calibration.json`` (benchmarks/network_calibration.py), as the
simulator adds them: the links alone. Each run also records where a decode's seconds go
(``plane_s_per_decode``: fold, allreduce, replica step, check) and the coordinator's phases
(``timings_s_per_round``), from which ``network_calibration.py report`` calibrates the model's
work terms in place and predicts every run with them (``benchmarks/network_live_model.py``).
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
            "param_checksum", "decoded_jobs", "plane_s_per_decode", "exposed_overhead_s_per_round",
            "message_dtype")
    return {**{k: out.get(k) for k in keep}, "wall_s": time.perf_counter() - t0}


def predict(run: dict, fit: dict, n: int, nodes: int) -> dict:
    """The simulator's round with the links alone: measured compute plus the plane's modelled
    communication (``network_calibration.py report`` adds the work terms, calibrated in place)."""
    from network_terms import model_for
    net = model_for(fit, run["num_params"], workers_per_node=max(1, -(-n // nodes)))
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
             ("| plane | round ms | compute ms | predicted round ms (links only) | predicted / measured | "
              "coordinator bytes/round |"),
             "|---|---|---|---|---|---|"]
    for plane in PLANES:
        run = entry["runs"][plane]
        p = predict(run, entry["fit"], entry["workers"], nodes)
        lines.append(f"| {plane} | {p['measured_round_s'] * 1e3:.0f} | "
                     f"{p['compute_s_per_round'] * 1e3:.0f} | {p['predicted_round_s'] * 1e3:.0f} | "
                     f"{p['predicted_over_measured']:.2f} | "
                     f"{run['coordinator_bytes_per_round']:,.0f} |")
    star, coll = (entry["runs"][p]["runtime_s"] / entry["runs"][p]["rounds"] for p in PLANES)
    lines += ["", f"The star's round over the collective plane's: {star / coll:.2f}."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=12)
    p.add_argument("--workers", type=int, nargs="+",
                   help="gcode workers, one run per count (default: one per worker node); more than the "
                   "nodes puts several on a node, sharing its link, which the model does not describe; fewer "
                   "leaves nodes idle")
    p.add_argument("--calibration", default=str(REPO / "benchmarks" / "results" / "network_calibration.json"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "netns_live.json"))
    args = p.parse_args(argv)
    rate, ips = os.environ.get("GCODE_NETNS_RATE"), os.environ.get("GCODE_NETNS_NODE_IPS", "").split()
    if not rate or not ips:
        print("netns_live.py: run me under cluster/netns.sh (see the docstring)", file=sys.stderr)
        return 2
    fit = json.loads(Path(args.calibration).read_text())["report"]["fits"][rate]
    out = Path(args.out)
    for workers in args.workers or [len(ips)]:
        load = os.getloadavg()
        runs = {plane: train(plane, workers, args.jobs) for plane in PLANES}
        entry = {"rate": rate, "nodes": len(ips), "workers": workers, "jobs": args.jobs,
                 "date": time.strftime("%Y-%m-%d %H:%M"), "code": "one call per round",
                 "cpus": os.cpu_count(), "load_average_before": load, "load_average_after": os.getloadavg(),
                 "fit": fit, "runs": runs,
                 "prediction": {plane: predict(run, fit, workers, len(ips)) for plane, run in runs.items()}}
        result = json.loads(out.read_text()) if out.exists() else {"runs": {}}
        result["what"] = ("gcode train on both data planes across emulated nodes (cluster/netns.sh), round "
                          "time against the calibrated network model (benchmarks/netns_live.py)")
        key = rate if workers == len(ips) else f"{rate}-{len(ips)}nodes-{workers}workers"
        result["runs"][key] = entry
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(markdown(entry))
        print(f"\nwrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
