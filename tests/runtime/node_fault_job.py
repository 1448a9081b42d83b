"""Kill a whole worker node of a 3-node ray.cluster_utils.Cluster on loopback in the middle of a
checkpointed run; print one JSON line with the outcome.

Used by test_faults.py in a subprocess (one Ray per process). Usage::

    python node_fault_job.py CONFIG.json CHECKPOINT_DIR MODE

The head has no CPUs (it runs only the coordinator); two worker nodes of 1 CPU each hold the 4
workers (0.25 CPU each), alternating. At round 3 the node holding workers 1 and 3 is killed
without warning (SIGKILL of its raylet and workers). Workers 1 and 3 are in different FR groups,
so every round after the kill has two stragglers where gc s=1 tolerates one: each round falls
back and waits for them.

MODE ``restart``: actors may restart (max_restarts=3) and the surviving node has room, so Ray
restarts them there and the run completes. MODE ``lost``: max_restarts=0, so they never come
back: the round exceeds cluster.round_timeout_s and the run fails with a RunFailed error naming the
missing workers, while the checkpoints written before remain.
"""

import json
import os
import sys
import time
import traceback

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray
from ray.cluster_utils import Cluster

from gcode.config import from_dict
from gcode.runtime import train
from gcode.runtime.cluster import start_workers


def main() -> int:
    cfg_path, ckpt_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(cfg_path, encoding="utf-8") as f:
        data = json.load(f)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "node_ip_address": "127.0.0.1",
        # notice a dead node within about a second (defaults: several seconds)
        "_system_config": {"health_check_period_ms": 200, "health_check_failure_threshold": 3,
                           "health_check_initial_delay_ms": 0, "health_check_timeout_ms": 500}})
    out = {"mode": mode}
    try:
        nodes = [cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        data["cluster"].update({"address": cluster.address, "placement": "spread",
                                "worker_cpus": 0.25,
                                "max_restarts": 3 if mode == "restart" else 0})
        if mode == "lost":
            data["cluster"]["round_timeout_s"] = 6.0
        data["checkpoint"] = {"dir": ckpt_dir, "every": 2}
        cfg = from_dict(data)
        pool = start_workers(cfg.cluster)
        node_of = [info["node"] for info in pool.info]
        victim_id = node_of[1]
        victim = next(nd for nd in nodes if nd.node_id == victim_id)
        out["victim_workers"] = [w for w, nd in enumerate(node_of) if nd == victim_id]
        out["nodes_before"] = len(set(node_of))

        def progress(rec):
            if rec["round"] == 3 and "killed_at_round" not in out:
                cluster.remove_node(victim, allow_graceful=False)
                out["killed_at_round"] = rec["round"]
        t0 = time.perf_counter()
        try:
            res = train(cfg, pool=pool, progress=progress)
            out.update(ok=True, **{k: res[k] for k in (
                "param_checksum", "decoded_jobs", "jobs", "rounds", "restarts", "failures",
                "waits", "checkpoints", "max_decode_rel_error")})
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out.update(ok=False, error_type=type(exc).__name__, error=str(exc),
                       traceback=traceback.format_exc()[-2000:])
        out["run_s"] = time.perf_counter() - t0
        out["nodes_after"] = len({info["node"] for info in
                                  ray.get([a.ready.remote() for a in pool.actors], timeout=60)}) \
            if out.get("ok") else None
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
