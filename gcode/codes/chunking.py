"""Turning chunk fractions into whole samples.

Exact slot sizes need the samples per job to be a multiple of the scheme's granularity. When they
are not, chunks are *balanced*: each chunk gets ⌊fraction·N⌋ samples and the remaining samples
go one each to the chunks with the largest remainders (ties to the lowest index). Every sample is
used exactly once, so the decoded gradient is still the exact full-batch gradient; only the
per-slot cost becomes uneven by at most one sample.
"""

from __future__ import annotations

import numpy as np


def allocate_samples(chunk_fractions: np.ndarray, num_samples: int) -> np.ndarray:
    """Integer sample counts per chunk, summing to ``num_samples`` (largest-remainder rule)."""
    fractions = np.asarray(chunk_fractions, dtype=np.float64)
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if fractions.ndim != 1 or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError("chunk_fractions must be a 1-D array of non-negative values summing to 1")
    ideal = fractions * num_samples
    counts = np.floor(ideal + 1e-9).astype(np.int64)
    shortfall = num_samples - int(counts.sum())
    order = np.argsort(-(ideal - counts), kind="stable")
    counts[order[:shortfall]] += 1
    return counts


def chunk_boundaries(chunk_fractions: np.ndarray, num_samples: int) -> list[slice]:
    """Contiguous sample ranges [start, stop) for each chunk of one job."""
    ends = np.cumsum(allocate_samples(chunk_fractions, num_samples))
    starts = np.concatenate([[0], ends[:-1]])
    return [slice(int(a), int(b)) for a, b in zip(starts, ends)]
