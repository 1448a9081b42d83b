"""The network calibration's measurements on a cluster (``benchmarks/network_calibration.py
measure`` runs :func:`cmd_measure`; its docstring says what is measured): the worker node's Ray
actor, the transfers and the rounds of both planes at n = 4 and 8.

``benchmarks/netns_collective.py`` extends :func:`worker_base`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

MB = 1e6
NS = (4, 8)
RING_SIZES_MB = (0.25, 1.0, 4.0, 13.0)
STAR_SIZES_MB = (1.0, 4.0, 13.0)
ROUND_PARAMS = (1.0e6, 3.25e6)  # fp32 values: a 4 MB and mlp-wide's 13 MB gradient


def worker_class():
    """The Ray actor class of one worker node."""
    import ray
    return ray.remote(num_cpus=0)(worker_base())


def worker_base():
    """One worker node's actor, a plain class (Ray and torch are imported here only: ``report``
    and docs/RESULTS.md's renderer need neither; benchmarks/netns_collective.py extends it)."""
    import ray
    import torch

    class Worker:
        """One worker node's actor: the collective plane's member, and the star's source and sink."""

        def __init__(self):
            from gcode.runtime.collective import CollectiveConfig, GroupConfig
            torch.set_num_threads(1)
            self.config = CollectiveConfig(accumulate_dtype="float32", group=GroupConfig(timeout_s=180.0))
            self.plane = None
            self.arrays: dict[int, np.ndarray] = {}

        def node(self) -> str:
            return ray.util.get_node_ip_address()

        # ---- the collective plane's group, re-formed per n (a member per worker of the round)
        def new_plane(self, numel: int) -> None:
            from gcode.runtime.collective import CollectivePlane
            if self.plane is not None:
                self.plane.close()
            self.plane = CollectivePlane(numel, "cpu", self.config)

        def rendezvous_point(self):
            return self.plane.rendezvous_point()

        def join_group(self, rendezvous, rank: int) -> None:
            self.plane.join_group(rendezvous, rank).result()

        def leave_group(self) -> None:
            self.plane.leave_group().result()

        def allreduce(self, nbytes: float, repeats: int) -> list[float]:
            """A barrier, then a timed allreduce; per repeat."""
            import torch.distributed as dist
            x = torch.ones(max(1, int(nbytes // 4)), dtype=torch.float32)
            dist.all_reduce(x)  # warm-up
            out = []
            for _ in range(repeats):
                dist.barrier()
                t0 = time.perf_counter()
                dist.all_reduce(x)
                out.append(time.perf_counter() - t0)
            return out

        # ---- the collective round
        def collective_round(self, job: int, key) -> dict:
            """One worker's round on the collective plane, as the model counts it: the coordinator's
            call carries the decode coefficients (in steady state, with the next round's tasks); the
            worker keeps its coded result (made once: no compute), folds it, the group allreduces,
            and its reply is the done report (bytes, not gradients)."""
            entered = time.time()  # one clock: every node of these clusters is on this machine
            key = tuple(key)
            self.plane.keep(key, job, self._array(self.plane.jobs.numel, torch.float32))
            self.plane.fold(job, [(key, 1.0)]).result()
            folded = time.time()
            total = self.plane.reduce(job).result()
            reduced = time.time()
            self.plane.release(job)
            return {"job": job, "numel": int(total.numel()), "loss": 0.0,
                    "times": {"entered": entered, "folded": folded, "reduced": reduced}}

        def ping(self, payload: bytes) -> bytes:
            return payload

        # ---- the star's source and sink
        def _array(self, numel: int, dtype=None):
            if numel not in self.arrays:
                self.arrays[numel] = np.ones(numel, dtype=np.float32)
            a = self.arrays[numel]
            return torch.from_numpy(a) if dtype is not None else a

        def gradient(self, params_box: list) -> np.ndarray:
            """The star's worker: fetch the round's parameters, return a gradient of the same size."""
            params = ray.get(params_box[0])
            return self._array(params.size)

        def array(self, numel: int) -> np.ndarray:
            return self._array(numel)

        def fetch(self, box: list) -> float:
            t0 = time.perf_counter()
            ray.get(box[0])
            return time.perf_counter() - t0

    return Worker


def on(ip: str) -> dict:
    return {"resources": {f"node:{ip}": 0.001}}


def form(workers, numel: int, generation: int) -> None:
    import ray

    from gcode.runtime.collective import GroupConfig, form_group
    ray.get([w.new_plane.remote(numel) for w in workers], timeout=300)
    form_group(workers, GroupConfig(timeout_s=180.0), generation)


def round_phases(start: float, times: list[dict]) -> dict:
    """Where a collective round's time went: until the last worker entered its call (the
    control message and the OS waking each worker), folding (the longest fold, and the span from
    the last entry to the last fold: the round's critical path through the folds), and the
    allreduce from the last worker's fold to the last worker's end."""
    last_in = max(t["entered"] for t in times)
    last_fold = max(t["folded"] for t in times)
    return {"to_last_entry_s": last_in - start, "entry_skew_s": last_in - min(t["entered"] for t in times),
            "fold_s": max(t["folded"] - t["entered"] for t in times), "fold_span_s": last_fold - last_in,
            "allreduce_s": max(t["reduced"] for t in times) - last_fold}


def median(xs) -> float:
    return float(statistics.median(xs))


def measure_setting(workers, repeats: int) -> dict:
    """Every calibration transfer and round, for n in NS (the first n workers)."""
    import ray
    out: dict = {"ring": [], "gather": [], "scatter": [], "control": [], "rounds": []}
    generation = 0
    for n in NS:
        group = workers[:n]
        for numel in ROUND_PARAMS:  # a group per d: the accumulators have the model's size
            form(group, int(numel), generation)
            generation += 1
            if numel == ROUND_PARAMS[0]:
                for size in RING_SIZES_MB:
                    per_rank = ray.get([w.allreduce.remote(size * MB, repeats) for w in group], timeout=900)
                    slowest = [max(ts) for ts in zip(*per_rank)]
                    out["ring"].append({"n": n, "bytes": size * MB, "seconds": median(slowest),
                                        "seconds_all": slowest})
            times, phases = [], []
            for rep in range(repeats + 1):
                job = 1_000 * generation + rep
                t0, wall0 = time.perf_counter(), time.time()
                acks = ray.get([w.collective_round.remote(job, (i, rep, 0)) for i, w in enumerate(group)],
                               timeout=600)
                if rep:
                    times.append(time.perf_counter() - t0)
                    phases.append(round_phases(wall0, [a["times"] for a in acks]))
            out["rounds"].append({"plane": "collective", "n": n, "params": numel, "seconds": median(times),
                                  "seconds_all": times, "phases": phases})
            times = []
            for rep in range(repeats + 1):
                t0 = time.perf_counter()
                box = [ray.put(np.zeros(int(numel), dtype=np.float32))]
                grads = ray.get([w.gradient.remote(box) for w in group], timeout=600)
                if rep:
                    times.append(time.perf_counter() - t0)
                assert all(g.size == int(numel) for g in grads)
                del box, grads
            out["rounds"].append({"plane": "star", "n": n, "params": numel, "seconds": median(times),
                                  "seconds_all": times})
        ray.get([w.leave_group.remote() for w in group], timeout=300)
        # the star's transfers through the coordinator's link
        for size in STAR_SIZES_MB:
            numel = int(size * MB / 4)
            for k in sorted({1, n // 2, n}):
                if k == n or n == NS[-1]:  # k = n for each n; k = 1 and n/2 once (n = 8)
                    times = []
                    for _ in range(repeats):
                        t0 = time.perf_counter()  # as in a round: the workers' puts are on the path
                        refs = [w.array.remote(numel) for w in workers[:k]]
                        ray.get(refs, timeout=600)
                        times.append(time.perf_counter() - t0)
                        del refs
                    out["gather"].append({"k": k, "bytes_each": size * MB, "seconds": median(times),
                                          "seconds_all": times})
            times = []
            for _ in range(repeats):
                array = np.ones(numel, dtype=np.float32)
                t0 = time.perf_counter()  # as in a round: the driver's put is on the path
                box = [ray.put(array)]
                ray.get([w.fetch.remote(box) for w in group], timeout=600)
                times.append(time.perf_counter() - t0)
                del box
            out["scatter"].append({"k": n, "bytes_each": size * MB, "seconds": median(times),
                                   "seconds_all": times})
        times = []
        for _ in range(repeats * 4):
            t0 = time.perf_counter()
            ray.get([w.ping.remote(b"x" * 64) for w in group], timeout=600)
            times.append(time.perf_counter() - t0)
        out["control"].append({"n": n, "bytes": 64, "seconds": median(times), "seconds_all": times})
    return out


def worker_node_ips(head_ip: str) -> list[str]:
    import ray
    named = os.environ.get("GCODE_NETNS_NODE_IPS")
    if named:
        return named.split()
    return sorted((n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]
                   and n["NodeManagerAddress"] != head_ip and n["Resources"].get("CPU", 0) > 0),
                  key=lambda ip: tuple(int(p) for p in ip.split(".")))


def cmd_measure(args) -> int:
    import ray
    import torch
    setting = args.setting or os.environ.get("GCODE_NETNS_RATE")
    address = os.environ.get("RAY_ADDRESS")
    if not setting or not address:
        print("network_calibration.py measure: run under cluster/netns.sh, or give --setting with "
              "RAY_ADDRESS set (cluster/local.sh --hold prints it)", file=sys.stderr)
        return 2
    head_ip = os.environ.get("GCODE_NETNS_HEAD_IP") or address.rsplit(":", 1)[0]
    ray.init(address=address, _node_ip_address=head_ip, log_to_driver=False)
    ips = worker_node_ips(head_ip)
    if len(ips) < max(NS):
        print(f"network_calibration.py: {len(ips)} worker nodes, {max(NS)} needed", file=sys.stderr)
        return 2
    worker = worker_class()
    workers = [worker.options(**on(ip)).remote() for ip in ips[:max(NS)]]
    assert ray.get([w.node.remote() for w in workers], timeout=600) == ips[:max(NS)]
    load = os.getloadavg()
    t0 = time.perf_counter()
    rows = measure_setting(workers, args.repeats)
    entry = {"setting": setting, "rate": os.environ.get("GCODE_NETNS_RATE"), "head": head_ip,
             "nodes": ips[:max(NS)], "repeats": args.repeats, "cpus": os.cpu_count(),
             "torch": torch.__version__, "ray": ray.__version__, "date": time.strftime("%Y-%m-%d"),
             "load_average_before": load, "load_average_after": os.getloadavg(),
             "wall_s": time.perf_counter() - t0, **rows}
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {"settings": {}}
    result["what"] = ("the network model (gcode.sim.network) calibrated on measured transfers and its "
                      "prediction of both planes' rounds at n = 4, 8 (benchmarks/network_calibration.py)")
    result["settings"][setting] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"measured {setting} in {entry['wall_s']:.0f} s; wrote {out}")
    for r in rows["rounds"]:
        print(f"  {r['plane']:10s} n={r['n']} d={r['params']:.3g}: {r['seconds'] * 1e3:.1f} ms")
    return 0
