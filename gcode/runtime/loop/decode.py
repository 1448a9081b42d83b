"""fp64 decoding with streaming accumulation.

Decoding job t is Σ coefficient · result over the results the scheme names. Two paths:

* **batch**: :func:`weighted_sum`, a blocked fp64 sum that reads each fp32 result once;
* **streaming**: a result whose task has all coefficients 1 (uncoded chunks, M-SGC's D1 chunks,
  fractional-repetition groups) is folded into the job's fp64 accumulator as it arrives, a few
  at a time (:meth:`Decoder.flush`).
  Its decode coefficient is 1 whatever the straggler set, so at decode time only the remaining
  results (GC-coded groups, whose coefficients depend on who finished) are added. Results with
  an identical task signature (job, chunks, coefficients) are identical vectors, so only the
  first is folded; a decoding may name any of them.

If a decoding does not use exactly the folded signatures with coefficient 1 (for example the
approximate ``ignore`` scheme rescales), the accumulator is discarded and the job is decoded from
the stored results by the batch path, so streaming can never change what is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...codes import MiniTask, ResultKey

#: columns per block of the blocked weighted sum: the fp64 accumulator and scratch blocks
#: (1 MiB each) stay in cache while every result streams through once (measured best of
#: 2^13 ... 2^18 on the 2-core EPYC box; see benchmarks/bench_overhead.py)
BLOCK = 1 << 17

_executor = None


def _pool(threads: int):
    global _executor
    from concurrent.futures import ThreadPoolExecutor
    if _executor is None or _executor._max_workers < threads:
        _executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gcode-decode")
    return _executor


def weighted_sum(arrays: list[np.ndarray], coefficients: list[float], out: np.ndarray | None = None,
                 block: int = BLOCK, threads: int = 1) -> np.ndarray:
    """Σ c_k · a_k in float64, reading each array once, block by block (cache-friendly).

    ``out`` (float64) is accumulated into when given. ``threads > 1`` splits the columns over a
    thread pool (numpy releases the GIL), for big decodes on an otherwise idle coordinator.
    """
    if not arrays:
        raise ValueError("weighted_sum needs at least one array")
    d = arrays[0].shape[0]
    if out is None:
        out = np.zeros(d, dtype=np.float64)
    if threads > 1 and d >= 2 * block:
        step = -(-d // threads)
        step = -(-step // block) * block
        parts = [(s, min(s + step, d)) for s in range(0, d, step)]
        futures = [_pool(threads).submit(weighted_sum, [a[s:e] for a in arrays], coefficients,
                                         out[s:e], block, 1) for s, e in parts]
        for f in futures:
            f.result()
        return out
    coefs = np.asarray(coefficients, dtype=np.float64)
    scratch = np.empty(min(block, d), dtype=np.float64)
    for start in range(0, d, block):
        stop = min(start + block, d)
        acc = out[start:stop]
        tmp = scratch[: stop - start]
        for a, c in zip(arrays, coefs):
            if c == 1.0:
                np.add(acc, a[start:stop], out=acc, dtype=np.float64)
            else:
                np.multiply(a[start:stop], c, out=tmp, dtype=np.float64)
                np.add(acc, tmp, out=acc)
    return out


def all_finite(array: np.ndarray, threads: int = 1, block: int = BLOCK) -> bool:
    """True when every value of ``array`` is finite; blocks are checked on ``threads`` threads
    (numpy releases the GIL), so validating a result costs a fraction of one read of it."""
    flat = array.reshape(-1)
    d = flat.shape[0]

    def part(start: int, stop: int) -> bool:
        return all(np.isfinite(flat[s:min(s + block, stop)]).all() for s in range(start, stop, block))
    if threads > 1 and d >= 2 * block:
        step = -(-d // threads)
        futures = [_pool(threads).submit(part, s, min(s + step, d)) for s in range(0, d, step)]
        return all(f.result() for f in futures)
    return part(0, d)


def axpy64(acc: np.ndarray, array: np.ndarray, coefficient: float = 1.0,
           scratch: np.ndarray | None = None) -> None:
    """acc += coefficient · array, computed in float64 (array may be fp32)."""
    if coefficient == 1.0:
        np.add(acc, array, out=acc, dtype=np.float64)
        return
    if scratch is None:
        scratch = np.empty_like(acc)
    np.multiply(array, coefficient, out=scratch, dtype=np.float64)
    np.add(acc, scratch, out=acc)


def signature(task: MiniTask) -> tuple:
    return (task.job, task.chunks, task.coefficients)


class _HostMath:
    """fp64 accumulation in numpy on the host (numpy's mixed fp32->fp64 add is ~3x torch's)."""

    def __init__(self, d: int, threads: int):
        self.d, self.threads = d, threads

    def zeros(self) -> np.ndarray:
        return np.zeros(self.d, dtype=np.float64)

    def fold(self, acc: np.ndarray, arrays: list[np.ndarray], coefficients: list[float]) -> None:
        if len(arrays) == 1 and coefficients[0] == 1.0 and self.threads == 1:
            np.add(acc, arrays[0], out=acc, dtype=np.float64)
        else:
            weighted_sum(arrays, coefficients, out=acc, threads=self.threads)

    @staticmethod
    def tensor(acc: np.ndarray):
        import torch
        return torch.from_numpy(acc)


class _DeviceMath:
    """fp64 accumulation with torch on an accelerator (results are copied there as they come)."""

    def __init__(self, d: int, device):
        import torch
        self.d, self.device, self.torch = d, device, torch

    def zeros(self):
        return self.torch.zeros(self.d, dtype=self.torch.float64, device=self.device)

    def fold(self, acc, arrays: list, coefficients: list[float]) -> None:
        for array, c in zip(arrays, coefficients):
            acc.add_(self.stage(array), alpha=float(c))

    def stage(self, array, non_blocking: bool = False):
        """``array`` on the device (a no-op for a result staged there already); with
        ``non_blocking`` the copy from page-locked memory is only queued."""
        from gcode.train.flat import as_tensor
        if not isinstance(array, self.torch.Tensor):
            array = as_tensor(array)
        return array.to(self.device, non_blocking=non_blocking)

    @staticmethod
    def tensor(acc):
        return acc


@dataclass
class _Job:
    acc: object = None                                  # fp64 accumulator (numpy or tensor)
    loss: float = 0.0                                   # coded losses of the streamed results
    folded: dict[tuple, ResultKey] = field(default_factory=dict)  # streamed: in acc or pending
    pending: list[ResultKey] = field(default_factory=list)        # streamed, not yet in acc
    keys: set[ResultKey] = field(default_factory=set)


class Decoder:
    """Stores received results per job and decodes them in float64, on the host (numpy,
    ``threads`` threads) or on an accelerator ``device`` (torch). A result carries its task's
    coded loss, which decodes with the same coefficients into the job's batch loss.

    Streamed results are folded in batches of ``fold_batch`` (:meth:`flush`): one blocked pass
    over k results reads the fp64 accumulator once instead of k times, which is what bounds a
    host decode (an fp32 result is a third of the bytes of one accumulator update)."""

    def __init__(self, num_params: int, streaming: bool = True, threads: int = 1, device=None,
                 fold_batch: int = 4, torch_math: bool | None = None):
        self.d = int(num_params)
        self.streaming = streaming
        self.fold_batch = fold_batch
        self.device = device
        if torch_math is None:  # torch on an accelerator; numpy on the host (torch_math: tests)
            torch_math = not (device is None or getattr(device, "type", str(device)) == "cpu")
        self.math = (_DeviceMath(self.d, device or "cpu") if torch_math
                     else _HostMath(self.d, max(1, threads)))
        self.results: dict[ResultKey, np.ndarray] = {}
        self.losses: dict[ResultKey, float] = {}
        self.sig: dict[ResultKey, tuple] = {}
        self.jobs: dict[int, _Job] = {}
        self.streamed = 0     # decodes that used the accumulator
        self.fallbacks = 0    # decodes that had to discard it

    @property
    def on_device(self) -> bool:
        """Whether jobs decode on an accelerator (results are then staged there on arrival)."""
        return isinstance(self.math, _DeviceMath)

    def stage(self, array: np.ndarray, threads: int = 1):
        """(``array`` where jobs decode, its finiteness check, the check's completion event): a
        result's one copy to the decode device and its validation in one step. On a GPU the
        copy, the check and the check's copy back to host memory are queued, and the check is a
        0-dim bool tensor readable once the event has completed (``array`` must stay alive
        until then: the copy reads it); with torch math on the CPU it is that tensor at once;
        on the host the check runs now on ``threads`` threads and is a bool (no event)."""
        if not self.on_device:
            return array, all_finite(array, threads), None
        torch = self.math.torch
        staged = self.math.stage(array, non_blocking=True)
        flag = torch.isfinite(staged).all()
        event = None
        if staged.device.type == "cuda":  # the flag comes back on its own: no stream sync
            flag = flag.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        return staged, flag, event

    @staticmethod
    def host(array) -> np.ndarray:
        """A stored result as a host array (results staged on a device are copied back)."""
        return array if isinstance(array, np.ndarray) else array.cpu().numpy()

    def add(self, key: ResultKey, task: MiniTask, array: np.ndarray, loss: float = 0.0) -> None:
        """Keep ``array`` (worker key.worker's result for ``task``); queue it for the job's
        accumulator when streamable (coefficients all 1 and a new task signature)."""
        if key in self.results:
            return
        self.results[key] = array
        self.losses[key] = float(loss)
        self.sig[key] = signature(task)
        self._register(self.jobs.setdefault(task.job, _Job()), key)

    def _register(self, job: _Job, key: ResultKey) -> None:
        """Add stored result ``key`` to ``job``, queued for its accumulator when streamable."""
        sig = self.sig[key]
        job.keys.add(key)
        if self.streaming and all(c == 1.0 for c in sig[2]) and sig not in job.folded:
            job.folded[sig] = key
            job.pending.append(key)
            job.loss += self.losses[key]

    def discard(self, keys) -> None:
        """Forget stored results found invalid after they were stored. A job whose accumulator
        may hold one of them streams again from its remaining results (in the order they
        came), so a discarded result is never part of a decode."""
        for key in keys:
            if key not in self.results:
                continue
            sig = self.sig.pop(key)
            del self.results[key]
            del self.losses[key]
            job = self.jobs.get(sig[0])
            if job is None:
                continue
            job.keys.discard(key)
            if job.folded.get(sig) == key:
                self.jobs[sig[0]] = fresh = _Job()
                for kept in [k for k in self.results if k in job.keys]:
                    self._register(fresh, kept)

    def flush(self, min_pending: int | None = None) -> None:
        """Fold every job's queued streamed results into its accumulator, in one pass per job,
        when at least ``min_pending`` (default ``fold_batch``) are queued."""
        least = self.fold_batch if min_pending is None else min_pending
        for job in self.jobs.values():
            if job.pending and len(job.pending) >= least:
                if job.acc is None:
                    job.acc = self.math.zeros()
                self.math.fold(job.acc, [self.results[k] for k in job.pending], [1.0] * len(job.pending))
                job.pending = []

    def decode(self, t: int, decoding: list[tuple[ResultKey, float]], unreached=()):
        """Job t's (gradient, loss): Σ coef · result as a float64 tensor and Σ coef · loss as a
        float; then forget job t's results. (``unreached`` is for planes that step themselves:
        here the coordinator steps, :class:`gcode.runtime.loop.jobs.Jobs`.)"""
        job = self.jobs.get(t, _Job())
        missing = [k for k, _ in decoding if k not in self.results]
        if missing:
            raise KeyError(f"decoding of job {t} names results never received: {missing[:3]}")
        rest_keys, rest_coefs, consumed = [], [], set()
        for key, coef in decoding:
            sig = self.sig[key]
            if coef == 1.0 and sig in job.folded and sig not in consumed:
                consumed.add(sig)
            else:
                rest_keys.append(key)
                rest_coefs.append(coef)
        if job.folded and consumed == set(job.folded):
            out = job.acc if job.acc is not None else self.math.zeros()
            loss = job.loss
            rest_keys, rest_coefs = job.pending + rest_keys, [1.0] * len(job.pending) + rest_coefs
            loss -= sum(self.losses[k] for k in job.pending)  # re-added below with the rest
            self.streamed += 1
        else:
            if job.folded:
                self.fallbacks += 1
            out, loss = self.math.zeros(), 0.0
            rest_keys, rest_coefs = [k for k, _ in decoding], [c for _, c in decoding]
        if rest_keys:
            self.math.fold(out, [self.results[k] for k in rest_keys], rest_coefs)
            loss += sum(c * self.losses[k] for k, c in zip(rest_keys, rest_coefs))
        self.forget(t)
        return self.math.tensor(out), loss

    def forget(self, t: int) -> None:
        job = self.jobs.pop(t, None)
        if job is None:
            return
        for key in job.keys:
            self.results.pop(key, None)
            self.losses.pop(key, None)
            self.sig.pop(key, None)

    def forget_before(self, t: int) -> None:
        """Drop every job older than t (results that a decoded job did not need, late arrivals)."""
        for old in [j for j in self.jobs if j < t]:
            self.forget(old)

    def step_of(self, t: int) -> None:
        """No step is ever pending here: the coordinator steps what this decodes."""

    def settle(self) -> None:
        """Nothing pending (see :meth:`step_of`)."""

    # ---- checkpoint ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The stored results (host arrays) and the jobs' fp64 accumulators; queued folds are
        folded first, so the state is accumulators and stored results only."""
        self.flush(min_pending=1)

        def host(acc):
            return None if acc is None else np.asarray(self.math.tensor(acc).cpu().numpy())
        return {"streaming": self.streaming, "streamed": self.streamed, "fallbacks": self.fallbacks,
                "results": [[tuple(key), self.sig[key], self.host(arr), self.losses[key]]
                            for key, arr in self.results.items()],
                "jobs": [[t, {"acc": host(job.acc), "loss": job.loss,
                              "folded": [[sig, tuple(k)] for sig, k in job.folded.items()],
                              "keys": sorted(tuple(k) for k in job.keys)}]
                         for t, job in self.jobs.items()]}

    def load_state_dict(self, state: dict) -> None:
        self.streamed, self.fallbacks = int(state["streamed"]), int(state["fallbacks"])
        for key, sig, arr, loss in state["results"]:
            arr = np.asarray(arr)
            if arr.shape != (self.d,):
                raise ValueError(f"a stored result has shape {arr.shape}, expected ({self.d},)")
            k = ResultKey(*key)
            self.results[k] = arr
            self.losses[k] = float(loss)
            self.sig[k] = sig
        for t, job in state["jobs"]:
            acc = None
            if job["acc"] is not None:
                acc = self.math.zeros()
                self.math.fold(acc, [np.asarray(job["acc"], dtype=np.float64)], [1.0])
            self.jobs[int(t)] = _Job(acc=acc, loss=float(job["loss"]),
                                     folded={sig: ResultKey(*k) for sig, k in job["folded"]},
                                     keys={ResultKey(*k) for k in job["keys"]})
