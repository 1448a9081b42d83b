"""The shared-memory transport's result buffers: regions that workers write their results into.

Invariants:

* a result buffer is written by one call at a time: it is lent to a call and comes back when
  the call is answered, failed or its worker died, and then only once no array of its last
  result is alive on the coordinator (a weak reference to the array every view derives from);
* a result buffer belongs to one worker: only that worker's calls borrow it, so each worker
  maps (and, on a GPU, page-locks) only the few buffers its own calls in flight need, not
  every buffer of the run.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .shm_frames import Region


@dataclass(eq=False)
class _Buffer:
    region: Region
    owner: int | None = None  # the call (seq) it is lent to, until that call gives it back
    result: Any = None   # weakref to the root array of its last result (gives it back when dead)


class ResultBuffers:
    """Buffers made by ``make_region(name, nbytes)``, lent to calls (objects with ``seq``,
    ``worker`` and ``buffer``); ``stats`` counts those reserved at setup and made in a round."""

    def __init__(self, make_region: Callable[[str, int], Region], stats: dict):
        self.make_region, self.stats = make_region, stats
        self.buffers: list[_Buffer] = []
        #: (worker, region bytes) -> that worker's buffers free to lend
        self.free: dict[tuple[int, int], list[int]] = {}

    def reserve(self, workers: int, per_worker: int, nbytes: int) -> None:
        """Make ``per_worker`` buffers of ``nbytes`` for each of the first ``workers`` now."""
        nbytes = max(nbytes, 8)
        for w in range(workers):
            for _ in range(per_worker):
                self.free.setdefault((w, nbytes), []).append(self._new(nbytes))
                self.stats["result_buffers_reserved"] += 1

    def _new(self, nbytes: int) -> int:
        self.buffers.append(_Buffer(self.make_region(f"r{len(self.buffers)}", nbytes)))
        return len(self.buffers) - 1

    def lend(self, nbytes: int, seq: int, w: int) -> int:
        """A free buffer of worker ``w`` of at least ``nbytes`` (the same size first), or a new
        one, lent to call ``seq``."""
        nbytes = max(nbytes, 8)
        sizes = [nbytes] if self.free.get((w, nbytes)) else sorted(
            size for (worker, size), free in self.free.items()
            if worker == w and free and size >= nbytes)
        if sizes:
            i = self.free[w, sizes[0]].pop()
        else:  # none free: made now, inside a round (reserve makes them at setup)
            i = self._new(nbytes)
            self.stats["result_buffers_made"] += 1
        self.buffers[i].owner, self.buffers[i].result = seq, None
        return i

    def give_back(self, call) -> None:
        """``call``'s buffer may be lent again: the call is over and no array of its result
        lives. Only the call it is lent to gives it back, once."""
        buf = self.buffers[call.buffer]
        if buf.owner == call.seq:
            buf.owner = None
            self.free.setdefault((call.worker, buf.region.nbytes), []).append(call.buffer)

    def array_of(self, call, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """The result's array over ``call``'s buffer (read-only; the buffer comes back when the
        array and every view of it are gone), or, when the shape the worker claims does not fit
        the buffer, a placeholder of that shape for validation to refuse."""
        buf = self.buffers[call.buffer]
        count = int(np.prod(shape))
        if count * dtype.itemsize > buf.region.nbytes:
            self.give_back(call)
            return np.broadcast_to(np.zeros((), dtype), shape)
        root = buf.region.array(dtype, count)
        root.flags.writeable = False
        buf.result = weakref.ref(root, lambda _, call=call: self.give_back(call))
        return root.reshape(shape)

    def close(self) -> None:
        for buf in self.buffers:
            buf.region.close()
