"""What a model needs in memory, known before anything is allocated: the model is built on
torch's ``meta`` device, which records shapes and no data, and its parameters and buffers are
counted. A run checks this against the memory this machine has before it starts Ray, so that a
model too large to hold (``hidden = 10**9``) is one line naming the setting, not an allocator
error from deep inside a worker."""

from __future__ import annotations

import itertools


def model_bytes(model_fn) -> int | None:
    """Bytes of the parameters and buffers of ``model_fn()``, built on the meta device; None when
    the model cannot be built there (it is then built for real later, and reports itself)."""
    import torch
    try:
        with torch.device("meta"):
            model = model_fn()
    except Exception:  # noqa: BLE001 - any failure here is reported by the real build
        return None
    if not isinstance(model, torch.nn.Module):
        return None
    return sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))


def available_bytes() -> int | None:
    """Memory available to new allocations (Linux ``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def memory_problem(model_fn, copies: int) -> str | None:
    """What keeps ``copies`` of the model (the coordinator's models and the local workers'
    replicas, parameters and buffers only: a lower bound) from fitting in this machine's
    available memory, or None."""
    size, free = model_bytes(model_fn), available_bytes()
    if size is None or free is None or size * copies <= free:
        return None
    return (f"the model holds {gib(size)} of parameters and buffers; the {copies} copies this run "
            f"keeps in this machine's memory need at least {gib(size * copies)}, more than the "
            f"{gib(free)} available: make the model smaller, or train fewer models or workers")


__all__ = ["available_bytes", "memory_problem", "model_bytes"]
