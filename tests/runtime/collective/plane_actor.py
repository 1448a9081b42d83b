"""A worker actor for the collective tests: the plane's actor methods, delegated as a gcode
worker will delegate them, plus deterministic coded results and a busy compute thread.

Partial gradients are a function of (seed, job) only (:func:`chunk_grads`), so the driver and
every actor, restarted or not, compute the same numbers.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import ray
import torch

from gcode.runtime.collective import CollectiveConfig, CollectivePlane


def chunk_grads(seed: int, job: int, chunks: int, dim: int) -> np.ndarray:
    """(chunks, dim) float32 partial gradients of ``job``."""
    return np.random.default_rng([seed, job]).standard_normal((chunks, dim)).astype(np.float32)


def coded_message(seed: int, job: int, chunks_total: int, dim: int, chunks, coefficients,
                  dtype) -> np.ndarray:
    """Σ coefficient · chunk gradient in fp64, cast to the scheme's message dtype (as a worker sends)."""
    grads = chunk_grads(seed, job, chunks_total, dim)[list(chunks)].astype(np.float64)
    return (np.asarray(coefficients, dtype=np.float64) @ grads).astype(dtype)


@ray.remote(num_cpus=0, max_concurrency=4, max_restarts=1)
class PlaneActor:
    def __init__(self, numel: int, config: CollectiveConfig, seed: int = 0):
        torch.set_num_threads(1)
        self.numel, self.seed = numel, seed
        self.plane = CollectivePlane(numel, "cpu", config)
        self.computing = threading.Event()
        self.stop_computing = threading.Event()
        self.sharded = None

    def pid(self) -> int:
        return os.getpid()

    def ready(self) -> bool:
        return True

    def node(self) -> str:
        return ray.util.get_node_ip_address()

    # ---- the plane's actor methods
    def rendezvous_point(self):
        return self.plane.rendezvous_point()

    def join_group(self, rendezvous, rank: int) -> None:
        self.plane.join_group(rendezvous, rank).result()

    def leave_group(self) -> None:
        self.plane.leave_group().result()

    def fold(self, job: int, pairs) -> int:
        return self.plane.fold(job, [(tuple(k), a) for k, a in pairs]).result()

    def decode(self, job: int, pairs) -> np.ndarray:
        return self.plane.decode(job, [(tuple(k), a) for k, a in pairs]).result().numpy()

    def reduce(self, job: int) -> np.ndarray:
        return self.plane.reduce(job).result().numpy()

    def release(self, job: int) -> None:
        self.plane.release(job)

    def running(self) -> str | None:
        return self.plane.running

    def generation(self):
        return self.plane.generation

    # ---- compute
    def configure(self, config: CollectiveConfig) -> None:
        """A fresh plane (the old one leaves its group)."""
        self.plane.close()
        self.plane = CollectivePlane(self.numel, "cpu", config)

    def compute(self, worker: int, r: int, tasks, dtype: str) -> int:
        """Keep this worker's coded results of round r: tasks = [(job, slot, chunks, coefficients,
        chunks of the job)]."""
        for job, slot, chunks, coefficients, chunks_total in tasks:
            message = coded_message(self.seed, job, chunks_total, self.numel, chunks, coefficients, dtype)
            self.plane.keep((worker, r, slot), job, torch.from_numpy(message))
        return len(tasks)

    def keep_raw(self, key, job: int, values) -> None:
        self.plane.keep(tuple(key), job, torch.as_tensor(np.asarray(values)))

    def busy(self, bound_s: float = 300.0) -> int:
        """A compute thread that multiplies matrices until told to stop (or ``bound_s``)."""
        self.computing.set()
        a = torch.randn(400, 400)
        products, end = 0, time.monotonic() + bound_s
        while not self.stop_computing.is_set() and time.monotonic() < end:
            a = torch.tanh(a @ a)
            products += 1
        self.computing.clear()
        return products

    def is_computing(self) -> bool:
        return self.computing.is_set()

    def reduce_while_busy(self, job: int) -> dict:
        """Allreduce job while :meth:`busy` runs; says whether compute was still going when it ended."""
        total = self.plane.reduce(job).result()
        return {"sum": total.numpy(), "computing_at_end": self.computing.is_set()}

    def end_busy(self) -> None:
        self.stop_computing.set()

    # ---- replicas
    def replica(self, seed: int) -> dict:
        """A model's and an optimizer's state built from ``seed`` (the replicas every worker holds)."""
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model(torch.randn(3, 8)).sum().backward()
        opt.step()
        return {"model": model.state_dict(), "optimizer": opt.state_dict()}

    def receive_replica(self, src: int, seed: int | None) -> dict:
        """Broadcast a replica from ``src`` (which builds it from ``seed``); the checksum each has."""
        from gcode.runtime.collective import checksum
        from gcode.runtime.collective.replicas import flatten_tree
        tree = self.replica(seed) if seed is not None else None
        got = self.plane.broadcast(tree, src).result()
        _skeleton, tensors = flatten_tree(got)
        return {"checksum": checksum(tensors), "step": float(got["optimizer"]["state"][0]["step"]),
                "keys": sorted(got["optimizer"]["state"])}

    def check_replicas(self, named: dict) -> dict:
        replicas = {k: [torch.as_tensor(np.asarray(v))] for k, v in named.items()}
        return self.plane.check_replicas(replicas).result()

    def zero_step(self, job: int, params, zero: int, lr: float) -> np.ndarray:
        """Step flat ``params`` with job's reduced gradient: zero=0 (allreduce, whole Adam) or
        zero=1 (reduce-scatter, this rank's shard of Adam, all-gather); returns the parameters."""
        flat = torch.as_tensor(np.array(params, dtype=np.float32))
        make = lambda ps: torch.optim.Adam(ps, lr=lr)
        if zero:
            from gcode.runtime.collective.sharding import ShardedReplica
            from gcode.train import FlatModel
            model = FlatModel(torch.nn.Linear(flat.numel(), 1, bias=False))
            model.load(flat)
            member = self.plane.member
            sharded = ShardedReplica(model, make(model.module.parameters()), member.rank, member.world_size)
            self.plane.submit("zero=1 step", lambda: sharded.step(self.plane.jobs.accumulator(job),
                                                                  1.0)).result()
            return model.snapshot()
        leaf = flat.clone()
        opt = make([leaf])
        leaf.grad = self.plane.reduce(job).result().to(torch.float32)
        opt.step()
        return leaf.numpy()


WORLD = 4


def start_actors(ray, config, n: int = WORLD, numel: int = 4096, max_restarts: int = 1):
    actors = [PlaneActor.options(max_restarts=max_restarts).remote(numel, config) for _ in range(n)]
    ray.get([a.ready.remote() for a in actors], timeout=180)
    return actors


def kill_all(ray, actors) -> None:
    for a in actors:
        ray.kill(a, no_restart=True)
