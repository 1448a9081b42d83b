"""Turning chunk fractions into whole samples, group by group.

A scheme's chunks come in *groups* of equal-size chunks that one code treats alike: uncoded and
GC have one group (the code's parts); M-SGC has its D1 chunks, then one group per D2 code. When
the samples per job are a multiple of the scheme's granularity every chunk is exact. Otherwise:

1. each group gets its sample total first: ⌊fraction·N⌋, and the remaining samples go one each
   to the groups with the largest remainders (ties to the lowest index);
2. each group spreads its total evenly over its P chunks: chunk j gets
   ⌊(j+1)·T/P⌋ − ⌊j·T/P⌋ samples.

Step 2 is periodic over the group, so any run of k consecutive chunks, cyclically (a cyclic code's
task covers λ+1 consecutive parts), holds ⌊k·T/P⌋ or ⌈k·T/P⌉ samples. Slot costs inside one
group therefore differ by at most one sample, and a group's total is within one sample of its
exact share. Every sample is used exactly once, so decoding stays exact.

With ``block=K`` (a run's canonical blocks, ``RunConfig(exact_blocks=K)``) the same allocation
runs over the N/K consecutive blocks of K samples and is scaled by K: every chunk is then a union
of whole blocks, whatever the scheme, n or s. N must be a multiple of K.
"""

from __future__ import annotations

import numpy as np


def _groups_of(fractions: np.ndarray, groups) -> list[int]:
    """Validated group sizes; by default each maximal run of equal fractions is one group."""
    if groups is None:
        starts = np.flatnonzero(np.concatenate([[True], ~np.isclose(fractions[1:], fractions[:-1])]))
        return np.diff(np.append(starts, len(fractions))).tolist() if len(fractions) else []
    sizes = [int(g) for g in groups]
    if any(g < 1 for g in sizes) or sum(sizes) != len(fractions):
        raise ValueError(f"groups must be positive sizes summing to {len(fractions)} chunks, got {sizes}")
    start = 0
    for g in sizes:
        part = fractions[start:start + g]
        if not np.allclose(part, part[0]):
            raise ValueError(f"chunks {start}..{start + g - 1} form a group but differ in size")
        start += g
    return sizes


def allocate_samples(chunk_fractions: np.ndarray, num_samples: int, groups=None,
                     block: int = 1) -> np.ndarray:
    """Integer sample counts per chunk, summing to ``num_samples`` (see the module docstring).

    ``groups``: sizes of the consecutive groups of equal chunks (``Scheme.chunk_groups``).
    ``block``: every count is a multiple of it (whole blocks; ``num_samples`` must be one too).
    """
    if block != 1:
        if block < 1 or num_samples % block:
            raise ValueError(f"num_samples={num_samples} must be a multiple of block={block} >= 1")
        return allocate_samples(chunk_fractions, num_samples // block, groups) * block
    fractions = np.asarray(chunk_fractions, dtype=np.float64)
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if fractions.ndim != 1 or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError("chunk_fractions must be a 1-D array of non-negative values summing to 1")
    sizes = _groups_of(fractions, groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    ideal = np.add.reduceat(fractions, starts) * num_samples if sizes else np.zeros(0)
    totals = np.floor(ideal + 1e-9).astype(np.int64)
    order = np.argsort(-(ideal - totals), kind="stable")
    totals[order[:num_samples - int(totals.sum())]] += 1
    counts = np.empty(len(fractions), dtype=np.int64)
    for start, size, total in zip(starts, sizes, totals):
        cumulative = (np.arange(size + 1, dtype=np.int64) * int(total)) // size
        counts[start:start + size] = np.diff(cumulative)
    return counts


def chunk_boundaries(chunk_fractions: np.ndarray, num_samples: int, groups=None,
                     block: int = 1) -> list[slice]:
    """Contiguous sample ranges [start, stop) for each chunk of one job (whole blocks of
    ``block`` samples each)."""
    ends = np.cumsum(allocate_samples(chunk_fractions, num_samples, groups, block))
    starts = np.concatenate([[0], ends[:-1]])
    return [slice(int(a), int(b)) for a, b in zip(starts, ends)]


def worker_samples(scheme, num_samples: int, block: int = 1) -> np.ndarray:
    """Samples each worker computes in a steady-state round (every slot busy, no straggler) when a
    job has ``num_samples`` samples (chunks of whole ``block``s): the real per-worker load is this
    divided by ``num_samples``.

    It runs a fresh copy of ``scheme`` (built from its spec) straggler-free until round T.
    """
    from . import make_scheme
    spec = scheme.current.spec if hasattr(scheme, "segments") else scheme.spec
    probe = make_scheme(spec["name"], n=spec["n"], **spec["params"])
    counts = allocate_samples(probe.chunk_fractions, num_samples, probe.chunk_groups, block)
    everyone = np.ones(probe.n, dtype=bool)
    for r in range(probe.delay):
        probe.plan(r)
        probe.record(r, everyone)
        for t in range(max(0, r - probe.delay), r + 1):
            if probe.decodable(t):
                probe.decode(t)
    return probe.plan(probe.delay).chunk_totals(lambda job: counts)
