"""A round's plan and a job's decoding, held as arrays.

A scheme's plan for a round is a few :class:`TaskBlock`s, each one mini-task per worker of a
mask for one (job, slot), so planning, recording and decoding cost O(n) numpy work per round
and no Python object per worker. Drivers that need per-worker objects (the live coordinator, the
run log) still read ``plan[w]`` as a list of :class:`MiniTask`, built for every worker on
first use (one pass per block) and cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class MiniTask:
    """One partial gradient: Σ coefficients[k] · ∇(chunk ``chunks[k]`` of job ``job``).

    ``slot`` is its position in the worker's round; (worker, round, slot) names the result.
    """

    job: int
    slot: int
    chunks: tuple[int, ...]
    coefficients: tuple[float, ...]


class ResultKey(NamedTuple):
    worker: int
    round: int
    slot: int


@dataclass(frozen=True, eq=False)
class TaskBlock:
    """One task of (``job``, ``slot``) for every worker w with ``workers[w]``.

    Uncoded tasks (``code`` None): worker w computes chunk ``chunk[w]`` with coefficient 1.
    Coded tasks: worker w computes its row of gradient code ``code``, over the code's parts
    numbered from ``chunk_offset``. Arrays are shared, never written after planning.
    """

    job: int
    slot: int
    workers: np.ndarray            # bool (n,)
    chunk: np.ndarray | None = None  # int (n,), for uncoded tasks
    code: object = None            # a gcode.codes.gradient_code.GradientCode, for coded tasks
    chunk_offset: int = 0

    def task(self, worker: int) -> MiniTask:
        return self.tasks([int(worker)])[0]

    def tasks(self, workers: list[int]) -> list[MiniTask]:
        """The tasks of ``workers`` (each with ``self.workers[w]``), in that order."""
        job, slot = self.job, self.slot
        if self.code is None:
            return [MiniTask(job, slot, (c,), (1.0,)) for c in self.chunk[workers].tolist()]
        rows, offset = self.code.row_tuples, self.chunk_offset
        return [MiniTask(job, slot, *rows(w, offset)) for w in workers]

    def chunk_totals(self, chunk_values: np.ndarray) -> np.ndarray:
        """(n,) per worker: the sum of ``chunk_values`` over the chunks its task reads (0 for a
        worker without a task here)."""
        if self.code is None:
            totals = chunk_values[self.chunk]
        else:
            part_values = chunk_values[self.chunk_offset:self.chunk_offset + self.code.num_parts]
            totals = self.code.support_sums(part_values)
        return np.where(self.workers, totals, 0)


class Plan(Sequence):
    """Round r's mini-tasks: ``plan[w]`` is worker w's list, in slot order (built on first use).

    Invariant: a worker has at most one task per (job, slot), and blocks are in slot order.
    """

    def __init__(self, n: int, blocks: Sequence[TaskBlock] = ()):
        self.n = int(n)
        self.blocks: tuple[TaskBlock, ...] = tuple(b for b in blocks if b.workers.any())
        self._tasks: list[list[MiniTask]] | None = None  # every worker's, built on first use

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, worker):
        if isinstance(worker, slice):
            return [self.tasks(w) for w in range(self.n)[worker]]
        return self.tasks(worker)

    def tasks(self, worker: int) -> list[MiniTask]:
        """Worker's mini-tasks (cached: repeated calls return the same list)."""
        worker = int(worker)
        if worker < 0:
            worker += self.n
        if not 0 <= worker < self.n:
            raise IndexError(f"worker {worker} out of range for n={self.n}")
        if self._tasks is None:
            self._tasks = self._every_workers_tasks()
        return self._tasks[worker]

    def _every_workers_tasks(self) -> list[list[MiniTask]]:
        """Each worker's list, built block by block (one pass per block, not per worker)."""
        tasks: list[list[MiniTask]] = [[] for _ in range(self.n)]
        for block in self.blocks:
            workers = np.flatnonzero(block.workers).tolist()
            for worker, task in zip(workers, block.tasks(workers)):
                tasks[worker].append(task)
        return tasks

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or len(other) != self.n:
            return NotImplemented if not isinstance(other, Sequence) else False
        return all(self.tasks(w) == list(other[w]) for w in range(self.n))

    __hash__ = None  # mutable cache, compared by content

    def __repr__(self) -> str:
        return f"Plan(n={self.n}, blocks={[(b.job, b.slot, int(b.workers.sum())) for b in self.blocks]})"

    @property
    def has_tasks(self) -> bool:
        """False for a round in which no worker has a task (it runs nothing)."""
        return bool(self.blocks)

    def task_counts(self) -> np.ndarray:
        """(n,) number of tasks per worker."""
        counts = np.zeros(self.n, dtype=np.int64)
        for b in self.blocks:
            counts += b.workers
        return counts

    def jobs(self) -> set[int]:
        return {b.job for b in self.blocks}

    def chunk_totals(self, chunk_values_of) -> np.ndarray:
        """(n,) per worker: Σ over its tasks of ``chunk_values_of(job)`` over the chunks read."""
        totals = np.zeros(self.n, dtype=np.int64)
        for b in self.blocks:
            totals = totals + b.chunk_totals(np.asarray(chunk_values_of(b.job)))
        return totals

    def shifted(self, job_offset: int, slot_offset: int) -> Plan:
        """The same tasks with job and slot numbers moved (a switching scheme's segments)."""
        if job_offset == 0 and slot_offset == 0:
            return self
        return Plan(self.n, [replace(b, job=b.job + job_offset, slot=b.slot + slot_offset)
                             for b in self.blocks])

    @staticmethod
    def merged(n: int, plans: Sequence[Plan]) -> Plan:
        """Each worker's tasks of ``plans[0]``, then those of ``plans[1]``, …"""
        return Plan(n, [b for p in plans for b in p.blocks])


class Decoding(Sequence):
    """Job t's decoding: Σ coefficients[k] · result (workers[k], rounds[k], slots[k]) equals
    its full gradient. Indexing and iteration give (ResultKey, coefficient) pairs.

    A decoding may be *deferred* (:meth:`deferred`): its arrays, and so any coefficient solve,
    are computed on first use. A driver that only needs to know that the job decoded (the
    simulator) never pays for them; a solve that fails raises DecodeError at that first use.
    """

    _FIELDS = ("workers", "rounds", "slots", "coefficients")

    def __init__(self, workers, rounds, slots, coefficients):
        workers = np.asarray(workers, dtype=np.int64)
        size = (len(workers),)
        self._arrays = (workers, np.broadcast_to(np.asarray(rounds, dtype=np.int64), size),
                        np.broadcast_to(np.asarray(slots, dtype=np.int64), size),
                        np.broadcast_to(np.asarray(coefficients, dtype=np.float64), size))
        self._build = None
        self._items: list[tuple[ResultKey, float]] | None = None

    @classmethod
    def deferred(cls, build) -> Decoding:
        """A decoding computed by ``build()`` (returning a Decoding) on first use."""
        decoding = cls.__new__(cls)
        decoding._arrays, decoding._build, decoding._items = None, build, None
        return decoding

    def _resolved(self) -> tuple[np.ndarray, ...]:
        if self._arrays is None:
            self._arrays = self._build()._resolved()
            self._build = None
        return self._arrays

    workers = property(lambda self: self._resolved()[0])
    rounds = property(lambda self: self._resolved()[1])
    slots = property(lambda self: self._resolved()[2])
    coefficients = property(lambda self: self._resolved()[3])

    @staticmethod
    def coded(code, arrived: np.ndarray, rounds, slots) -> Decoding:
        """Deferred: gradient code ``code``'s decode vector over the bool mask ``arrived``;
        ``rounds`` and ``slots`` are scalars or (n,) arrays indexed by worker."""
        def build() -> Decoding:
            workers, coefficients = code.decode_vector(arrived)
            return Decoding(workers, rounds[workers] if np.ndim(rounds) else rounds,
                            slots[workers] if np.ndim(slots) else slots, coefficients)
        return Decoding.deferred(build)

    @staticmethod
    def from_pairs(pairs) -> Decoding:
        """A decoding from (ResultKey, coefficient) pairs."""
        pairs = list(pairs)
        return Decoding([k[0] for k, _ in pairs], [k[1] for k, _ in pairs],
                        [k[2] for k, _ in pairs], [c for _, c in pairs])

    @staticmethod
    def concat(parts: Sequence[Decoding]) -> Decoding:
        if len(parts) == 1:
            return parts[0]
        return Decoding.deferred(lambda: Decoding(*(
            np.concatenate([p._resolved()[i] for p in parts]) for i in range(4))))

    def shifted(self, round_offset: int, slot_offset: int) -> Decoding:
        if round_offset == 0 and slot_offset == 0:
            return self
        return Decoding.deferred(lambda: Decoding(self.workers, self.rounds + round_offset,
                                                  self.slots + slot_offset, self.coefficients))

    def items(self) -> list[tuple[ResultKey, float]]:
        if self._items is None:
            self._items = [(ResultKey(w, r, s), c) for w, r, s, c in zip(
                *(a.tolist() for a in self._resolved()))]
        return self._items

    def __len__(self) -> int:
        return len(self.workers)

    def __getitem__(self, k):
        return self.items()[k]

    def __iter__(self):
        return iter(self.items())

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return self.items() == list(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Decoding({self.items()!r})"
