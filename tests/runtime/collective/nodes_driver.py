"""Run against a multi-node Ray cluster (RAY_ADDRESS; cluster/local.sh --hold in tests): one
collective-plane actor per worker node, a gloo group formed across the nodes, and GC (cyclic)
and M-SGC decoded there under random conforming stragglers, each decoded sum checked against the
direct fp64 sum and across the workers. Prints one JSON line."""

import json
import os
import sys

import numpy as np
import ray

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plane_actor

from gcode.codes import make_scheme
from gcode.runtime.collective import CollectiveConfig, GroupConfig, accumulate_dtype_for, form_group
from gcode.sim.verify import random_conforming_stragglers

NUMEL, SEED = 2053, 0
address = os.environ["RAY_ADDRESS"]
head_ip = address.rsplit(":", 1)[0]
ray.init(address=address, _node_ip_address=head_ip, log_to_driver=False)
ray.cloudpickle.register_pickle_by_value(plane_actor)
ips = sorted(n["NodeManagerAddress"] for n in ray.nodes()
             if n["Alive"] and n["NodeManagerAddress"] != head_ip)
group = GroupConfig(timeout_s=120.0)
actors = [plane_actor.PlaneActor.options(resources={f"node:{ip}": 0.001})
          .remote(NUMEL, CollectiveConfig(group=group)) for ip in ips]
report = {"worker_nodes": ips, "placed": ray.get([a.node.remote() for a in actors], timeout=300),
          "schemes": []}
for generation, (name, params) in enumerate([("gc", {"s": 1, "gc_code": "cyclic"}),
                                             ("msgc", {"B": 1, "W": 2, "lam": 2, "gc_code": "cyclic"})]):
    scheme = make_scheme(name, n=len(actors), jobs=5, **params)
    config = CollectiveConfig(group=group, accumulate_dtype=accumulate_dtype_for(scheme.message_dtype))
    ray.get([a.configure.remote(config) for a in actors], timeout=120)
    rdv = form_group(actors, group, generation)
    rng = np.random.default_rng(1)
    errors, identical, stragglers = [], True, 0
    for r in range(scheme.total_rounds):
        missing = random_conforming_stragglers(scheme, r, rng)
        stragglers += int(missing.sum())
        plan, dtype = scheme.plan(r), np.dtype(scheme.message_dtype).name
        ray.get([a.compute.remote(w, r, [(t.job, t.slot, t.chunks, t.coefficients,
                                          len(scheme.chunk_fractions_for(t.job))) for t in plan[w]], dtype)
                 for w, a in enumerate(actors) if not missing[w]], timeout=120)
        scheme.record(r, ~missing)
        for t in range(max(0, r - scheme.delay), r + 1):
            if scheme.decodable(t) and not scheme.is_decoded(t):
                pairs = [[] for _ in actors]
                for key, coefficient in scheme.decode(t):
                    pairs[key.worker].append((tuple(key), coefficient))
                sums = ray.get([a.decode.remote(t, p) for a, p in zip(actors, pairs)], timeout=120)
                want = plane_actor.chunk_grads(SEED, t, len(scheme.chunk_fractions_for(t)), NUMEL)
                want = want.astype(np.float64).sum(axis=0)
                errors.append(float(np.linalg.norm(sums[0] - want) / np.linalg.norm(want)))
                identical &= all(np.array_equal(s, sums[0]) for s in sums)
                ray.get([a.release.remote(t) for a in actors])
    report["schemes"].append({"scheme": name, "host": rdv.host, "world": rdv.world_size,
                              "decoded": sum(scheme.is_decoded(t) for t in range(scheme.jobs)),
                              "jobs": scheme.jobs, "stragglers": stragglers, "max_rel_error": max(errors),
                              "identical": bool(identical)})
plane_actor.kill_all(ray, actors)
print(json.dumps(report))
