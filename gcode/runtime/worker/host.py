"""What a worker process needs of its host: its device, host copies of results, a job's batch
indices (cached for the last few jobs), its peak memory, and the message dtypes by name."""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..data import job_indices

#: the message dtypes a call may name
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def device_for(use_gpu: bool):
    """The actor's GPU when it was given one (Ray sets CUDA_VISIBLE_DEVICES), else the CPU."""
    return torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")


def to_host(out, host: np.ndarray | None = None) -> np.ndarray:
    """The results as a host array: ``host`` when given (filled from a GPU), else a fresh one
    (through pinned memory from a GPU)."""
    if host is not None:
        if out.device.type != "cpu":
            torch.from_numpy(host).copy_(out)
        return host
    if out.device.type == "cpu":
        return out.numpy()
    host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
    host.copy_(out)
    return host.numpy()


@functools.lru_cache(maxsize=8)
def job_batch(seed: int, job: int, batch_size: int, num_samples: int) -> np.ndarray:
    """:func:`job_indices`, kept for the last few jobs (read-only): a worker reading ahead
    draws the next job's batch one call before that job's own call needs it."""
    idx = job_indices(seed, job, batch_size, num_samples)
    idx.setflags(write=False)
    return idx


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MiB."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
