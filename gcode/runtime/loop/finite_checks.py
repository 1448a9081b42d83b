"""Results stored for decoding before their finiteness is known.

A result's values must be finite before it may count as arrived. On a GPU coordinator the check
runs where the result is copied for decoding: the copy and the check are queued on the device
and the host goes on (dispatching, waiting for the next arrival) while they run, instead of
waiting for each result's copy and reading its flag back at once. On the host the check runs at
once, and its outcome is taken at the same points as a GPU's (so both paths behave alike).

Invariants (:class:`PendingChecks`):

* a round ends only after every check of its results has been read (``settle(block=True)``
  before the policy's decision to end or fall back takes effect), so a non-finite result never
  counts towards a decodable set;
* a worker is sent its next round's tasks at its arrival only once its result's check has
  read finite (a failed result is retried in its own round, which a worker that had been
  sent the next round would refuse as stale);
* a result's host array (its shared-memory buffer) stays referenced until its check, queued
  after its copy, has completed: the buffer is not lent to another call while the copy reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(eq=False)
class Staged:
    """Worker ``worker``'s round-``round`` result for ``tasks``, stored as ``result`` (on the
    decode device) with its check ``flag`` not yet read: a bool, or a 0-dim bool tensor in host
    memory (on a GPU it is copied there, and ``event`` marks its arrival)."""

    round: int
    worker: int
    tasks: list
    result: Any
    flag: Any
    event: Any = None
    source: Any = field(default=None, repr=False)  # the host array copied from

    def done(self) -> bool:
        """Whether the check has completed, so reading it does not wait."""
        return self.event is None or bool(self.event.query())

    def passed(self) -> bool:
        """Whether the values are finite (waits for the check when it has not completed)."""
        if self.event is not None:
            self.event.synchronize()
        return bool(self.flag)

    def reason(self) -> str:
        if isinstance(self.result, np.ndarray):
            return f"{int(self.result.size - np.isfinite(self.result).sum())} non-finite values"
        import torch
        return f"{int((~torch.isfinite(self.result)).sum())} non-finite values"


class PendingChecks:
    """The stored results whose finiteness check has not been read yet (module docstring)."""

    def __init__(self):
        self.items: list[Staged] = []

    def add(self, item: Staged) -> None:
        self.items.append(item)

    def pending_for(self, worker: int) -> bool:
        """Whether a result of ``worker`` awaits its check."""
        return any(s.worker == worker for s in self.items)

    def settle(self, block: bool) -> tuple[list[Staged], list[tuple[Staged, str]]]:
        """Read the checks that have completed (every check when ``block``: waits for the last)
        and forget them: (the results found finite, those found non-finite with the reason).
        A completed check is read from host memory, without waiting for the device's queue."""
        ready = [block or s.done() for s in self.items]
        done = [s for s, r in zip(self.items, ready) if r]
        if not done:
            return [], []
        self.items = [s for s, r in zip(self.items, ready) if not r]
        flags = [s.passed() for s in done]
        for s in done:
            s.source = None  # copy done: the buffer may be lent again
        good = [s for s, ok in zip(done, flags) if ok]
        return good, [(s, s.reason()) for s, ok in zip(done, flags) if not ok]
