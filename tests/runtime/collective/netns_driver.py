"""Run by cluster/netns.sh in tests: one collective-plane actor per worker node, a group formed
across the namespaces, one allreduce; prints one JSON line."""

import json
import os
import sys

import numpy as np
import ray

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plane_actor

from gcode.runtime.collective import CollectiveConfig, GroupConfig, form_group

ray.init(address=os.environ["RAY_ADDRESS"], _node_ip_address=os.environ["GCODE_NETNS_HEAD_IP"],
         log_to_driver=False)
ray.cloudpickle.register_pickle_by_value(plane_actor)
ips = os.environ["GCODE_NETNS_NODE_IPS"].split()
config = CollectiveConfig(group=GroupConfig(timeout_s=60.0))
actors = [plane_actor.PlaneActor.options(resources={f"node:{ip}": 0.001}).remote(8, config) for ip in ips]
rdv = form_group(actors, config.group)
for w, a in enumerate(actors):
    ray.get(a.keep_raw.remote((w, 0, 0), 0, np.full(8, w + 1.0)))
    ray.get(a.fold.remote(0, [((w, 0, 0), 1.0)]))
sums = ray.get([a.reduce.remote(0) for a in actors], timeout=120)
nodes = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
print(json.dumps({"host": rdv.host, "nodes": nodes,
                  "sums": [s.tolist() for s in sums]}))
