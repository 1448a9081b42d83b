"""Replicas kept identical: state broadcast from a peer, and a checksum allreduce.

Every worker of the collective plane holds replicas of the M models and their optimizers, built
from the same seed and stepped with the same reduced gradients, so they stay bit-identical.

* :func:`broadcast_tree` sends a state tree (nested dicts and lists of tensors and JSON values,
  e.g. a model's and an optimizer's ``state_dict``) from one rank to all: a restarted actor
  receives the replicas' state from a peer. The tree's shape travels as JSON, never as a pickle.
* :func:`check_identical` compares the replicas' checksums across ranks with one allreduce and
  raises :class:`ReplicaMismatch`, one line naming the replica and the ranks that differ.

``zero=1`` (each rank steps its shard of the optimizers' state) is :mod:`.sharding`.

All of them are collectives: call them in the same order on every rank (the plane's
communication thread does).
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

#: torch 2.13 renamed the flat-tensor collectives; older releases have only the old names
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

_TENSOR = "__tensor__"
_PAIRS = "__pairs__"  # a dict, kept with its keys' types (an optimizer's state has int keys)


class ReplicaMismatch(Exception):
    """Replicas that should be bit-identical are not (the run must stop: it names which)."""


def caused_by_mismatch(exc: BaseException) -> bool:
    """Whether a worker's call (a Ray error) failed because its replicas differ from its peers'."""
    return isinstance(getattr(exc, "cause", None), ReplicaMismatch)


def flatten_tree(tree) -> tuple[object, list[torch.Tensor]]:
    """(a JSON-able skeleton with tensors replaced by their index, the tensors)."""
    tensors: list[torch.Tensor] = []

    def walk(node):
        if isinstance(node, torch.Tensor):
            tensors.append(node)
            return {_TENSOR: len(tensors) - 1, "dtype": str(node.dtype).removeprefix("torch."),
                    "shape": list(node.shape)}
        if isinstance(node, dict):
            return {_PAIRS: [[k, walk(v)] for k, v in node.items()]}
        if isinstance(node, (list, tuple)):
            return [walk(v) for v in node]
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"state tree holds a {type(node).__name__}; only tensors and JSON values travel")

    return walk(tree), tensors


def unflatten_tree(skeleton, tensors: Sequence[torch.Tensor]):
    def walk(node):
        if isinstance(node, dict) and _TENSOR in node:
            return tensors[node[_TENSOR]]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node[_PAIRS]}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(skeleton)


def broadcast_tree(tree, src: int, device: torch.device | str = "cpu"):
    """``tree`` from rank ``src`` to every rank; returns it (receivers pass None)."""
    device = torch.device(device)
    rank = dist.get_rank()
    if rank == src:
        skeleton, tensors = flatten_tree(tree)
        manifest = torch.frombuffer(bytearray(json.dumps(skeleton).encode()), dtype=torch.uint8).to(device)
        length = torch.tensor([manifest.numel()], dtype=torch.int64, device=device)
    else:
        length = torch.zeros(1, dtype=torch.int64, device=device)
    dist.broadcast(length, src)
    if rank != src:
        manifest = torch.empty(int(length.item()), dtype=torch.uint8, device=device)
    dist.broadcast(manifest, src)
    if rank != src:
        skeleton = json.loads(bytes(manifest.cpu().numpy()).decode())
        specs = []

        def collect(node):
            if isinstance(node, dict) and _TENSOR in node:
                specs.append(node)
            elif isinstance(node, dict):
                for _, v in node[_PAIRS]:
                    collect(v)
            elif isinstance(node, list):
                for v in node:
                    collect(v)

        collect(skeleton)
        specs.sort(key=lambda s: s[_TENSOR])
        tensors = [torch.empty(s["shape"], dtype=getattr(torch, s["dtype"]), device=device) for s in specs]
    for t in tensors:  # receivers' tensors are fresh and contiguous on ``device``
        dist.broadcast(t.detach().to(device).contiguous() if rank == src else t, src)
    return unflatten_tree(skeleton, tensors) if rank != src else tree


def checksum(tensors: Sequence[torch.Tensor]) -> int:
    """A 56-bit digest of the tensors' bytes, dtypes and shapes (order matters): CRC-32 and
    Adler-32 of the same stream, side by side. It tells replicas that drifted apart, not an
    adversary's; both read memory in place at several GB/s (a cryptographic hash of a copy
    took five times as long, on every worker at once, every check)."""
    crc, adler = 0, 1
    for t in tensors:
        data = np.ascontiguousarray(t.detach().cpu().numpy()).reshape(-1).view(np.uint8)
        for part in (f"{t.dtype}{tuple(t.shape)}".encode(), data):
            crc, adler = zlib.crc32(part, crc), zlib.adler32(part, adler)
    return ((crc << 24) ^ adler) & ((1 << 56) - 1)


def check_identical(replicas: dict[str, Sequence[torch.Tensor]], device: torch.device | str = "cpu") -> dict:
    """Allreduce every rank's checksum of each named replica; raise :class:`ReplicaMismatch`
    naming the first replica whose checksums differ, else return {name: checksum}."""
    rank, world = dist.get_rank(), dist.get_world_size()
    names = list(replicas)
    table = torch.zeros((len(names), world), dtype=torch.int64, device=device)
    for i, name in enumerate(names):
        table[i, rank] = checksum(replicas[name])
    dist.all_reduce(table)  # one non-zero entry per cell: a sum is a gather
    sums = table.cpu().tolist()
    for name, row in zip(names, sums):
        common, _ = Counter(row).most_common(1)[0]
        odd = [r for r, value in enumerate(row) if value != common]
        if odd:
            raise ReplicaMismatch(f"replica {name!r} differs on rank(s) {odd} from the other "
                                  f"{world - len(odd)} rank(s) (checksums {[hex(row[r]) for r in odd]} "
                                  f"against {hex(common)})")
    return {name: row[0] for name, row in zip(names, sums)}
