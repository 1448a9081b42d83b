"""A worker's per-job accumulators: its kept coded results, and Σ a·m over those the decode uses.

A decode of job t is Σᵢ aᵢ·mᵢ over received results, the same coefficients for every
coordinate. On the collective plane each worker keeps its own results (:meth:`keep`, from its
compute thread), folds a·m into job t's accumulator as the coordinator sends the coefficients
of its results (:meth:`fold`, possibly over several rounds for a sequential code), and the
workers sum their accumulators with one allreduce when job t is decodable. The sum of the
workers' accumulators is then exactly the coordinator's decode, up to the order of additions.

Invariants:
* an accumulator holds Σ a·m over the folded results of its job, in ``dtype`` (fp64 where the
  code's coefficients are not all 0 or 1; see docs/COLLECTIVE.md, "Precision");
* a result is folded at most once: folding it again with the same coefficient does nothing (a
  coordinator may repeat itself after a fault), with another coefficient raises;
* accumulators and kept results stay until :meth:`release`, so a failed allreduce can be
  repeated from them (the allreduce works on a copy, :meth:`copy`).

A job whose only fold so far is one result with coefficient 1 in the accumulators' dtype (an
uncoded or FR decode) keeps that result itself as its accumulator, read-only, until a second
fold or :meth:`accumulator` makes it a tensor of its own: no zeros and no add, and its copy
``m + 0.0`` has the bits of ``0 + 1·m``.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable

import torch


class JobAccumulators:
    """Kept results and accumulators of one worker, by job (thread-safe)."""

    def __init__(self, numel: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"):
        if numel < 1:
            raise ValueError(f"numel must be >= 1, got {numel}")
        self.numel, self.dtype, self.device = int(numel), dtype, torch.device(device)
        self._lock = threading.Lock()
        self._results: dict[Hashable, tuple[int, torch.Tensor]] = {}   # key -> (job, message)
        self._acc: dict[int, torch.Tensor] = {}
        self._lone: set[int] = set()  # jobs whose accumulator is still their one kept result
        self._folded: dict[int, dict[Hashable, float]] = {}            # job -> key -> coefficient

    def keep(self, key: Hashable, job: int, message: torch.Tensor) -> None:
        """Keep this worker's coded result ``key`` of ``job`` until the job is released."""
        message = message.detach().reshape(-1)
        if message.numel() != self.numel:
            raise ValueError(f"result {key} has {message.numel()} values, the model {self.numel}")
        with self._lock:
            self._results[key] = (int(job), message.to(self.device))

    def has(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._results

    def fold(self, job: int, pairs: Iterable[tuple[Hashable, float]]) -> int:
        """acc[job] += a·m for each (key, a) in ``pairs``, in the order given; returns how many
        were folded now (results folded before with the same coefficient are skipped)."""
        job = int(job)
        done = 0
        for key, coefficient in pairs:
            coefficient = float(coefficient)
            with self._lock:
                kept = self._results.get(key)
                folded = self._folded.setdefault(job, {})
                if key in folded:
                    if folded[key] != coefficient:
                        raise ValueError(f"result {key} of job {job} folded with coefficient "
                                         f"{folded[key]!r}, "
                                         f"now {coefficient!r}")
                    continue
                if kept is None:
                    raise KeyError(f"no kept result {key} for job {job}: its coefficient came before "
                                   f"the result")
                if kept[0] != job:
                    raise ValueError(f"result {key} belongs to job {kept[0]}, not job {job}")
                folded[key] = coefficient
                if job not in self._acc and coefficient == 1.0 and kept[1].dtype == self.dtype:
                    self._acc[job] = kept[1]  # the lone result (module docstring)
                    self._lone.add(job)
                    done += 1
                    continue
                acc = self._accumulator(job)
            acc.add_(kept[1].to(self.dtype), alpha=coefficient)
            done += 1
        return done

    def _accumulator(self, job: int) -> torch.Tensor:
        """Job's accumulator, a tensor of its own (under the lock)."""
        if job in self._lone:
            self._lone.discard(job)
            self._acc[job] = self._acc[job].add(0.0)  # 0 + 1·m, bit for bit
        acc = self._acc.get(job)
        if acc is None:
            acc = self._acc[job] = torch.zeros(self.numel, dtype=self.dtype, device=self.device)
        return acc

    def accumulator(self, job: int) -> torch.Tensor:
        """Job ``job``'s accumulator (zeros when nothing of it was folded here: a straggler's
        contribution)."""
        with self._lock:
            return self._accumulator(int(job))

    def copy(self, job: int) -> torch.Tensor:
        """A fresh tensor equal to job's accumulator (what an allreduce may overwrite)."""
        with self._lock:
            job = int(job)
            if job in self._lone:
                return self._acc[job].add(0.0)
            return self._accumulator(job).clone()

    def folded(self, job: int) -> dict:
        """{key: coefficient} folded into ``job``'s accumulator so far."""
        with self._lock:
            return dict(self._folded.get(int(job), {}))

    def release(self, job: int) -> None:
        """Drop ``job``'s accumulator and the results kept for it (after its step)."""
        job = int(job)
        with self._lock:
            self._acc.pop(job, None)
            self._lone.discard(job)
            self._folded.pop(job, None)
            for key in [k for k, (j, _) in self._results.items() if j == job]:
                del self._results[key]

    def jobs(self) -> list[int]:
        """Jobs with an accumulator or a kept result."""
        with self._lock:
            return sorted(set(self._acc) | {j for j, _ in self._results.values()})
