"""The worker's side of the collective data plane: a group membership, per-job accumulators, and
one communication thread that runs every collective in the order it was asked for.

A compute straggler never blocks the collective: collectives run on the plane's own thread, so
a worker whose compute thread is still busy enters job t's allreduce at once with what it has
folded (zeros for the results it never finished). The coordinator asks every worker for the
same collectives in the same order (``fold`` then ``reduce`` of job t, in increasing t), which
is the one rule torch.distributed needs; a thread of one's own keeps that order per worker, in
the order the requests reach it. An actor that serves calls concurrently (a threaded actor)
must submit job t's requests as one (:meth:`decode`), or from an async method before its first
``await``, so that a later call cannot overtake them.

Worker actor methods (each delegates here; the coordinator calls them):

==========================  ==================================================================
``rendezvous_point()``      (address, free port) on this node, asked of rank 0
``join_group(rdv, rank)``   join generation ``rdv.generation`` (leaving any older one)
``leave_group()``           abort collectives in flight, leave the group (after a fault)
``fold(job, pairs)``        acc[job] += a·m for this worker's (result key, a) pairs
``reduce(job)``             allreduce job's accumulator; every worker gets the decoded sum
``decode(job, pairs)``      ``fold`` then ``reduce`` as one request
``submit(what, body)``      any body run in order on the thread (the replicas' whole decode)
``check_replicas(named)``   checksum allreduce; :class:`ReplicaMismatch` names a mismatch
``broadcast(tree, src)``    a state tree from rank ``src`` (a restarted actor's replicas)
``release(job)``            drop job's accumulator and kept results after its step
==========================  ==================================================================

The compute thread calls ``keep(key, job, message)`` for each coded result it finishes.
Collective methods return a :class:`concurrent.futures.Future`; a failed collective raises
:class:`CollectiveError` (one line: which, which generation, why), after which the coordinator
re-forms the group and repeats the sum from the kept accumulators.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .accumulate import JobAccumulators
from .group import CollectiveError, GroupConfig, GroupMember, Rendezvous, rendezvous_point
from .replicas import ReplicaMismatch, broadcast_tree, check_identical

ACCUMULATE_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class CollectiveConfig:
    """The collective plane of one run: its group, the accumulators' dtype (float64 unless every
    decode coefficient is 0 or 1, as with FR codes and uncoded; docs/COLLECTIVE.md "Precision"),
    and ``zero`` (0: allreduce, every replica steps its whole optimizer; 1: reduce-scatter,
    sharded optimizer state, all-gather: :mod:`.sharding`)."""

    group: GroupConfig = field(default_factory=GroupConfig)
    accumulate_dtype: str = "float64"
    zero: int = 0

    def __post_init__(self):
        if self.accumulate_dtype not in ACCUMULATE_DTYPES:
            raise ValueError(f"accumulate_dtype must be one of {', '.join(ACCUMULATE_DTYPES)}, "
                             f"got {self.accumulate_dtype!r}")
        if self.zero not in (0, 1):
            raise ValueError(f"zero must be 0 or 1, got {self.zero!r}")


def accumulate_dtype_for(message_dtype) -> str:
    """The accumulators' dtype for a scheme's ``message_dtype``: float64 where the code needs fp64
    messages (cyclic codes, whose coefficients are not 0 or 1), else float32 (FR codes and
    uncoded decode with coefficients 1: an fp32 sum is as exact as DDP's)."""
    import numpy as np
    return "float64" if np.dtype(message_dtype) == np.float64 else "float32"


class CollectivePlane:
    """One worker's collective plane (see the module docstring for the calls)."""

    def __init__(self, numel: int, device: torch.device | str = "cpu",
                 config: CollectiveConfig | None = None):
        self.config = config or CollectiveConfig()
        self.device = torch.device(device)
        self.member = GroupMember(self.device)
        self.jobs = JobAccumulators(numel, getattr(torch, self.config.accumulate_dtype), self.device)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcode-collective")
        self.running: str | None = None  # the collective on the thread now, for monitors and tests

    # ---- membership
    def rendezvous_point(self) -> tuple[str, int]:
        return rendezvous_point()

    def join_group(self, rendezvous: Rendezvous, rank: int) -> Future:
        """Join on the communication thread, after whatever it was asked before."""
        return self._thread.submit(self.member.join, rendezvous, rank)

    def leave_group(self) -> Future:
        """Abort collectives in flight now, then leave once the thread is free."""
        self.member.abort()
        return self._thread.submit(self.member.leave)

    @property
    def generation(self) -> int | None:
        return self.member.generation

    # ---- data
    def keep(self, key: Hashable, job: int, message: torch.Tensor) -> None:
        """A coded result of this worker, kept until its job is released (compute thread)."""
        self.jobs.keep(key, job, message)

    def fold(self, job: int, pairs: Iterable[tuple[Hashable, float]]) -> Future:
        pairs = list(pairs)
        return self._thread.submit(self.jobs.fold, job, pairs)

    def reduce(self, job: int) -> Future:
        """Future of the allreduced sum of every worker's accumulator of ``job`` (a new tensor;
        the accumulator is kept for a repeat until :meth:`release`)."""
        def allreduce():
            total = self.jobs.copy(job)
            dist.all_reduce(total)
            return total
        return self._collective(f"allreduce of job {job}", allreduce)

    def decode(self, job: int, pairs: Iterable[tuple[Hashable, float]]) -> Future:
        """Fold ``pairs`` and reduce job in one request, so that no other collective can come
        between them: future of the decoded sum."""
        pairs = list(pairs)
        return self._collective(f"allreduce of job {job}", lambda: self.fold_and_reduce(job, pairs))

    def fold_and_reduce(self, job: int, pairs: list[tuple[Hashable, float]],
                        times: dict | None = None):
        """:meth:`decode`'s body, run on the calling thread: that must be the communication
        thread (a request of :meth:`submit`). ``times`` (when given) gets the seconds of
        ``fold`` and ``allreduce`` (which includes waiting for the last rank to enter it)."""
        t0 = time.perf_counter()
        self.jobs.fold(job, pairs)
        t1 = time.perf_counter()
        out = self.jobs.copy(job)
        dist.all_reduce(out)
        if times is not None:
            times.update(fold=t1 - t0, allreduce=time.perf_counter() - t1)
        return out

    def check_replicas(self, replicas: dict) -> Future:
        """Future of {name: checksum}; raises ReplicaMismatch naming the replica that differs."""
        return self._collective("replica check", lambda: check_identical(replicas, self.device))

    def broadcast(self, tree, src: int) -> Future:
        """Future of ``tree`` as rank ``src`` holds it (receivers pass None)."""
        return self._collective(f"broadcast from rank {src}", lambda: broadcast_tree(tree, src, self.device))

    def release(self, job: int) -> None:
        self.jobs.release(job)

    def close(self) -> None:
        self.member.abort()
        self._thread.submit(self.member.leave)
        self._thread.shutdown(wait=True)

    # ---- the communication thread
    def submit(self, what: str, body: Callable) -> Future:
        """Run ``body`` (which may issue collectives, and read or step the replicas) on the
        communication thread, after every request before it, in this generation; a failed
        collective raises :class:`CollectiveError` naming ``what``."""
        return self._collective(what, body)

    def _collective(self, what: str, body: Callable) -> Future:
        generation = self.member.generation  # as of the request: a stale one is refused

        def run():
            self.member.check(generation, what)
            self.running = what
            try:
                return body()
            except (CollectiveError, ReplicaMismatch):
                raise
            except RuntimeError as exc:  # gloo/NCCL: a peer died, or the timeout passed
                raise CollectiveError(f"{what} failed in generation {generation} on rank {self.member.rank}: "
                                      f"{' '.join(str(exc).split())[:300]}") from exc
            finally:
                self.running = None
        return self._thread.submit(run)
