"""Run one training job on a 3-node ray.cluster_utils.Cluster on loopback; print a JSON line.

Used by test_runtime_multinode.py in a subprocess (one Ray per process).
"""

import json
import os
import sys

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from ray.cluster_utils import Cluster

from gcode.config import ConfigError, from_dict
from gcode.runtime import train


def main() -> int:
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False,
                                      "node_ip_address": "127.0.0.1"})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        cfg = from_dict({
            "cluster": {"workers": 3, "address": cluster.address, "placement": "spread",
                        "round_timeout_s": 60, "startup_timeout_s": 120},
            "scheme": {"name": "msgc", "B": 1, "W": 2, "lam": 1, "jobs": 8},
            "train": {"model": "logistic", "batch_size": 240, "check_decode": True},
            "inject": {"model": "bursty", "params": {"B": 1, "W": 2, "lam": 1, "base": 0.02,
                                                      "slowdown": 4.0}},
        })
        res = train(cfg)
        refused = ""
        try:
            train(from_dict({"cluster": {
                "workers": 3, "address": cluster.address, "transport": "shm",
                "startup_timeout_s": 120}, "scheme": {"name": "uncoded", "jobs": 1},
                "train": {"model": "logistic", "batch_size": 240}}))
        except ConfigError as exc:
            refused = str(exc)
        print(json.dumps({"transport": res["transport"], "shm_refused": refused, "nodes": res["nodes"],
                          "decoded_jobs": res["decoded_jobs"], "jobs": res["jobs"],
                          "max_decode_rel_error": res["max_decode_rel_error"],
                          "stragglers": res["stragglers"], "node_ips": res["node_ips"]}))
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
