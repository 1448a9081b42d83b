"""Both planes' communication across emulated nodes, measured, for the network model's calibration.

Run on a cluster of ``cluster/netns.sh`` (each Ray node in its own network namespace, its link
limited by tc's tbf)::

    cluster/netns.sh --nodes 4 --rate 1gbit -- .venv/bin/python benchmarks/netns_collective.py
    cluster/netns.sh --nodes 4 --rate 10gbit -- .venv/bin/python benchmarks/netns_collective.py

One actor per worker node joins a gloo group through gcode's collective plane
(:func:`gcode.runtime.collective.form_group`). Measured, each as the median of ``--repeats``:

* **allreduce**: ``dist.all_reduce`` of fp32 tensors (13 MB is mlp-wide's gradient) among the
  workers, timed from a barrier to the slowest rank's end;
* **p2p**: one rank sends a tensor to another (gloo over one link each way);
* **gather** (the star's inbound half): k worker actors each return an array; an actor on the
  head node fetches the k results through Ray's object store, so they cross the head's one link;
* **scatter** (the star's outbound half): the head's actor puts one array and every worker
  actor fetches it.

Each row goes into ``--out`` (JSON, keyed by the link rate), with the network model's prediction
at the nominal rate (α = 0) and α, β fitted per plane (:func:`gcode.sim.network.fit_link`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import ray
import torch

REPO = Path(__file__).resolve().parents[1]
MB = 1e6
SIZES_MB = (0.004, 0.25, 1.0, 4.0, 13.0)


def member_class():
    """A worker of the collective plane and the star's source and sink: the calibration's worker
    (benchmarks/network_calibration.py), plus a point-to-point transfer."""
    from network_measure import worker_base

    class Member(worker_base()):
        def p2p(self, nbytes: float, repeats: int, src: int, dst: int) -> list[float]:
            import torch.distributed as dist
            x = torch.ones(max(1, int(nbytes // 4)), dtype=torch.float32)
            rank, out = dist.get_rank(), []
            for _ in range(repeats + 1):
                dist.barrier()
                t0 = time.perf_counter()
                if rank == src:
                    dist.send(x, dst)
                    dist.recv(x[:1], dst)  # the receiver's acknowledgement: the transfer is complete
                elif rank == dst:
                    dist.recv(x, src)
                    dist.send(x[:1], src)
                out.append(time.perf_counter() - t0)
            return out[1:]

    return ray.remote(num_cpus=0)(Member)


@ray.remote(num_cpus=0)
class Head:
    """The coordinator's end of the star, on the head node."""

    def node(self) -> str:
        return ray.util.get_node_ip_address()

    def gather(self, boxed: list) -> float:
        t0 = time.perf_counter()
        arrays = ray.get(boxed[0])
        elapsed = time.perf_counter() - t0
        assert all(a.nbytes > 0 for a in arrays)
        return elapsed

    def put(self, nbytes: float):
        return [ray.put(np.ones(int(nbytes // 4), dtype=np.float32))]


def on(ip: str):
    return {"resources": {f"node:{ip}": 0.001}}


def measure(repeats: int, sizes_mb) -> dict:
    nodes = os.environ["GCODE_NETNS_NODE_IPS"].split()
    head_ip = os.environ["GCODE_NETNS_HEAD_IP"]
    member = member_class()
    members = [member.options(**on(ip)).remote() for ip in nodes]
    head = Head.options(**on(head_ip)).remote()
    assert ray.get([m.node.remote() for m in members], timeout=300) == nodes
    assert ray.get(head.node.remote(), timeout=300) == head_ip
    from gcode.runtime.collective import GroupConfig, form_group
    ray.get([m.new_plane.remote(1) for m in members], timeout=300)
    form_group(members, GroupConfig(timeout_s=120.0))
    n = len(members)
    rows: dict = {"allreduce": [], "p2p": [], "gather": [], "scatter": []}
    for size in sizes_mb:
        per_rank = ray.get([m.allreduce.remote(size * MB, repeats) for m in members], timeout=600)
        slowest = [max(ts) for ts in zip(*per_rank)]
        rows["allreduce"].append({"n": n, "bytes": size * MB, "seconds": statistics.median(slowest),
                                  "seconds_all": slowest})
        per_rank = ray.get([m.p2p.remote(size * MB, repeats, 0, 1) for m in members], timeout=600)
        rows["p2p"].append({"bytes": size * MB, "seconds": statistics.median(per_rank[0]),
                            "seconds_all": per_rank[0]})
    big = max(sizes_mb) * MB
    for k in sorted({1, n}):
        times = []
        for _ in range(repeats):
            refs = [members[i].array.remote(int(big // 4)) for i in range(k)]
            ray.wait(refs, num_returns=k, fetch_local=False, timeout=300)
            times.append(ray.get(head.gather.remote([refs]), timeout=600))
            del refs
        rows["gather"].append({"sources": k, "bytes_each": big, "seconds": statistics.median(times),
                               "seconds_all": times})
    times = []
    for _ in range(repeats):
        boxed = ray.get(head.put.remote(big), timeout=300)
        per = ray.get([m.fetch.remote(boxed) for m in members], timeout=600)
        times.append(max(per))
        del boxed
    rows["scatter"].append({"sinks": n, "bytes_each": big, "seconds": statistics.median(times),
                            "seconds_all": times})
    for m in members:
        ray.kill(m)
    ray.kill(head)
    return rows


def model_figures(rows: dict, rate_bytes: float) -> dict:
    """The model's predictions at the nominal rate (α = 0) and α, β fitted per plane."""
    from gcode.sim.network import NetworkModel, fit_link
    ar = rows["allreduce"]
    n = ar[0]["n"]
    steps = [2 * (n - 1)] * len(ar)
    ring = fit_link([(2 * (n - 1) / n * r["bytes"], r["seconds"]) for r in ar], steps=steps)
    p2p = fit_link([(r["bytes"], r["seconds"]) for r in rows["p2p"]])
    star_samples = [(g["sources"] * g["bytes_each"], g["seconds"]) for g in rows["gather"]]
    star = fit_link(star_samples) if len(star_samples) >= 2 else None
    nominal = NetworkModel(alpha=0.0, beta=rate_bytes)
    predicted = []
    for r in ar:
        net = nominal.with_params(r["bytes"] / 4)
        predicted.append({"what": "allreduce", "bytes": r["bytes"], "measured_s": r["seconds"],
                          "predicted_s": float(net.allreduce(n)),
                          "predicted_fitted_s": float(NetworkModel(alpha=ring["alpha"], beta=ring["beta"],
                                                                   params=r["bytes"] / 4).allreduce(n))})
    for g in rows["gather"]:
        predicted.append({"what": f"gather {g['sources']}x", "bytes": g["sources"] * g["bytes_each"],
                          "measured_s": g["seconds"],
                          "predicted_s": g["sources"] * g["bytes_each"] / rate_bytes})
    for s in rows["scatter"]:
        predicted.append({"what": f"scatter {s['sinks']}x", "bytes": s["sinks"] * s["bytes_each"],
                          "measured_s": s["seconds"],
                          "predicted_s": s["sinks"] * s["bytes_each"] / rate_bytes})
    for p in predicted:
        p["measured_over_predicted"] = p["measured_s"] / p["predicted_s"]
    return {"fit_ring": ring, "fit_p2p": p2p, "fit_star_gather": star, "predicted": predicted}


def markdown(entry: dict) -> str:
    lines = [(f"**{entry['rate']}** per link ({entry['rate_bytes_per_s'] / MB:.0f} MB/s nominal), "
             f"{entry['nodes']} worker nodes + head, {entry['repeats']} repeats (median):"), "",
             "| transfer | bytes | measured s | model at nominal rate s | measured / model |",
             "|---|---|---|---|---|"]
    for p in entry["model"]["predicted"]:
        lines.append(f"| {p['what']} | {p['bytes'] / MB:.3g} MB | {p['measured_s']:.4f} | "
                     f"{p['predicted_s']:.4f} | "
                     f"{p['measured_over_predicted']:.2f} |")
    ring, p2p = entry["model"]["fit_ring"], entry["model"]["fit_p2p"]
    lines += ["", (f"Fitted: ring allreduce alpha {ring['alpha'] * 1e3:.3f} ms, "
                   f"beta {ring['beta'] / MB:.1f} MB/s "
                  f"(rel. RMS {ring['rel_rms']:.2f}); gloo p2p alpha {p2p['alpha'] * 1e3:.3f} ms, "
                  f"beta {p2p['beta'] / MB:.1f} MB/s.")]
    star = entry["model"]["fit_star_gather"]
    if star:
        lines[-1] += (f" Star gather (Ray object store): alpha {star['alpha'] * 1e3:.1f} ms, "
                      f"beta {star['beta'] / MB:.1f} MB/s.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sizes-mb", type=float, nargs="+", default=list(SIZES_MB))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "netns_collective.json"))
    args = p.parse_args(argv)
    rate = os.environ.get("GCODE_NETNS_RATE")
    if not rate or "GCODE_NETNS_NODE_IPS" not in os.environ:
        print("netns_collective.py: run me under cluster/netns.sh (see the docstring)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    ray.init(address=os.environ["RAY_ADDRESS"], _node_ip_address=os.environ["GCODE_NETNS_HEAD_IP"],
             log_to_driver=False)
    unit = {"gbit": 1e9, "mbit": 1e6, "kbit": 1e3, "bit": 1.0}
    number = rate.rstrip("abcdefghijklmnopqrstuvwxyz")
    rate_bytes = float(number) * unit[rate[len(number):]] / 8
    load = os.getloadavg()  # the machine may be shared: say how busy it was
    rows = measure(args.repeats, args.sizes_mb)
    entry = {"rate": rate, "rate_bytes_per_s": rate_bytes,
             "nodes": len(os.environ["GCODE_NETNS_NODE_IPS"].split()), "repeats": args.repeats,
             "cpus": os.cpu_count(), "torch": torch.__version__, "ray": ray.__version__,
             "date": time.strftime("%Y-%m-%d"), "load_average_before": load,
             "load_average_after": os.getloadavg(), **rows}
    entry["model"] = model_figures(rows, rate_bytes)
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {
        "what": "allreduce, p2p, star gather and scatter across Ray nodes in network namespaces "
                "(cluster/netns.sh), for calibrating gcode.sim.network", "runs": {}}
    result["runs"][rate] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(entry))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
