"""A worker's next batch, read on a background thread while its device computes the current one.

A GPU worker otherwise alternates: read and collate its samples on the CPU, then compute on the
GPU, with each side idle while the other works. A torch DDP loop gets that overlap for free,
since CUDA calls return before the kernels finish; a gcode worker must synchronize to send its
result, so it reads ahead instead: while task k computes, the samples of the task it will run
next (the next task of the same call, or a guess at the first task of the next call) are read.

Invariants: at most one read is in flight, and the dataset is never read by two threads at once
(``take`` waits for the pending read before reading anything itself). A read is keyed by its
exact sample indices, so a wrong guess costs one wasted read, never a wrong batch.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np


class BatchPrefetcher:
    """Reads batches by sample index with ``read``, one ahead, on one background thread."""

    def __init__(self, read: Callable[[np.ndarray], Any]):
        self._read = read
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcode-prefetch")
        self._pending: tuple[np.ndarray, Future] | None = None
        self.hits = 0    # batches that came from a read ahead
        self.misses = 0  # reads ahead that guessed other samples

    def start(self, rows: np.ndarray) -> None:
        """Begin reading ``rows`` in the background (after the pending read, if any)."""
        self._wait_pending()
        rows = np.array(rows, copy=True)
        self._pending = (rows, self._pool.submit(self._read, rows))

    def take(self, rows: np.ndarray) -> Any:
        """The batch at ``rows``: the pending read's when it read exactly these samples, else a
        read now, on this thread, once the pending read has finished."""
        ahead = self._wait_pending()
        if ahead is not None:
            if np.array_equal(ahead[0], rows):
                self.hits += 1
                return ahead[1]
            self.misses += 1
        return self._read(rows)

    def _wait_pending(self) -> tuple[np.ndarray, Any] | None:
        """(rows, batch) of the pending read once it finished; None when there was none or it
        raised (the caller then reads itself, which raises where the error belongs)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        rows, future = pending
        try:
            return rows, future.result()
        except Exception:  # noqa: BLE001 - a guessed read may fail; a real read reports it
            return None

    def close(self) -> None:
        self._wait_pending()
        self._pool.shutdown(wait=True)
