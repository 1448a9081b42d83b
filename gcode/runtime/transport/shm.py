"""The shared-memory transport: calls and results over a Unix socket per worker, arrays through
shared memory, for worker actors on the coordinator's node.

Per round and worker, a Ray actor call costs milliseconds (task submission, argument
resolution, a result object in the store); a frame on a Unix socket costs tens of
microseconds. Ray still starts, places and restarts the actors; this transport only carries
the rounds. Invariants:

* a job's parameters are written once into a region of their own, tagged with the job; the
  region is reused only after the job is decoded, and a worker that loaded a region whose tag
  changed meanwhile drops its call as stale (:mod:`gcode.runtime.worker.shm_serving`);
* a result buffer is lent to one call at a time, and belongs to one worker
  (:mod:`gcode.runtime.transport.shm_buffers`);
* a worker whose connection is down (its process died) gets its calls through Ray until the
  restarted actor has attached again.
"""

from __future__ import annotations

import itertools
import os
import selectors
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cluster.leftovers import private_folder
from ..wire import ERROR, Call, Result
from .base import CodeFailure
from .ray_transport import RayTransport
from .shm_buffers import ResultBuffers
from .shm_frames import (
    PARAMS_OFFSET,
    CallFrame,
    Hello,
    InBuffer,
    JobRegion,
    Region,
    ReplyFrame,
    frame,
    recv_frame,
    shm_root,
)

DIED = "died (connection closed)"
#: seconds a frame may take to arrive once its first byte did, or to be sent; longer, the
#: worker counts as lost (a stopped process must not hang the coordinator)
FRAME_TIMEOUT_S = 30.0
#: seconds between Ray polls while calls through Ray and through sockets are both pending
_MIXED_POLL_S = 0.002


def all_local(actors: list) -> bool:
    """Whether every actor runs on this process's Ray node."""
    import ray
    here = ray.get_runtime_context().get_node_id()
    nodes = ray.get([a.ready.remote() for a in actors], timeout=60)
    return all(info.get("node") == here for info in nodes)


@dataclass(frozen=True)
class ShmJob:
    """A job's data in shared memory: which region, its tag, chunk ranges, dtype and length."""

    index: int
    job: int
    bounds: tuple
    dtype: str
    count: int


@dataclass(eq=False)
class ShmCall:
    """One call in flight over a socket (hashable by identity, like an ObjectRef)."""

    seq: int
    worker: int
    buffer: int


@dataclass
class _Links:
    """Connections by worker (and a selector over them), and the Ray calls that re-attach
    restarted workers."""

    conns: dict = field(default_factory=dict)      # worker -> socket
    attaching: dict = field(default_factory=dict)  # worker -> ObjectRef of attach()
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)

    def add(self, w: int, sock: socket.socket) -> None:
        self.drop(w)
        self.conns[w] = sock
        self.selector.register(sock, selectors.EVENT_READ, w)

    def drop(self, w: int) -> None:
        sock = self.conns.pop(w, None)
        if sock is not None:
            self.selector.unregister(sock)
            sock.close()


class ShmTransport:
    """The shared-memory transport (module docstring); ``ray`` carries the calls of a worker
    whose connection is down."""

    name = "shm"
    carries_gradients = True

    def __init__(self, actors: list, ctx: tuple, timeout_s: float, pin: bool = False):
        """Connect every actor (each adopts context ``ctx`` and attaches within ``timeout_s``);
        ``pin``: page-lock the regions (the coordinator copies results to a GPU)."""
        import ray
        self.actors, self.ctx = actors, ctx
        self.ray = RayTransport(actors, ctx)
        self.stats = self.ray.stats  # one set of counters: calls through Ray count there
        self.pin = pin          # page-lock regions (the coordinator copies results to a GPU)
        self.dir = private_folder("gcode-", shm_root())  # its owner named, for a reaper
        self.ctl = os.path.join(self.dir, "ctl")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.ctl)
        self.listener.listen(max(16, len(actors)))
        self.links = _Links()
        self.slots: list[Region] = []
        self.free_slots: list[int] = []
        self.results = ResultBuffers(self._region, self.stats)
        self.inflight: dict[int, ShmCall] = {}   # seq -> call
        self.replies: dict[int, tuple] = {}      # seq -> (frame, error)
        self.forgotten: set[int] = set()         # calls never to be fetched: free on answer
        self.ray_jobs: dict[int, Any] = {}       # slot index -> ObjectRef (Ray fallback)
        self._seq = itertools.count()
        refs = [self._attach(w) for w in range(len(actors))]
        try:
            ray.get(refs, timeout=timeout_s)
            self._accept(len(actors), time.monotonic() + timeout_s)
        except Exception:
            self.close()
            raise
        self.links.attaching.clear()

    # ---- connections ------------------------------------------------------------------------
    def _attach(self, w: int):
        ref = self.actors[w].attach.remote(self.ctl, self.ctx[0], [self.ctx[1]])
        self.links.attaching[w] = ref
        return ref

    def _accept(self, count: int, deadline: float) -> None:
        """Accept ``count`` connections; each names its worker in a hello frame."""
        for _ in range(count):
            self.listener.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                raise RuntimeError(f"workers did not connect to {self.ctl} in time") from None
            sock.settimeout(FRAME_TIMEOUT_S)
            hello = recv_frame(sock)
            if not isinstance(hello, Hello):
                sock.close()
                continue
            self.links.add(int(hello.worker), sock)

    def _poll_attach(self) -> None:
        """Take back workers whose re-attach call finished (their process restarted)."""
        import ray
        if not self.links.attaching:
            return
        refs = list(self.links.attaching.values())
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for w, ref in list(self.links.attaching.items()):
            if ref in done:
                del self.links.attaching[w]
                try:
                    ray.get(ref, timeout=5)
                    self._accept(1, time.monotonic() + 5)
                    self.stats["reattached"] += 1
                except Exception:  # noqa: BLE001, S110 - still down: calls keep going through Ray
                    pass

    def _lost(self, w: int) -> None:
        """Worker w's connection closed: its calls in flight failed; re-attach it."""
        self.links.drop(w)
        for seq, call in list(self.inflight.items()):
            if call.worker == w:
                del self.inflight[seq]
                self.results.give_back(call)  # its writer is gone
                self.replies[seq] = (None, DIED)
                self._drop_forgotten(call)
        if w not in self.links.attaching:
            self._attach(w)

    # ---- job data -------------------------------------------------------------------------
    def put_job(self, t: int, flat, bounds: tuple) -> ShmJob:
        """Job t's parameters into a free region (a tensor on a GPU straight from the device)."""
        dtype = np.dtype(str(flat.dtype).removeprefix("torch."))
        count = int(flat.size if isinstance(flat, np.ndarray) else flat.numel())
        nbytes = PARAMS_OFFSET + count * dtype.itemsize
        if self.free_slots and self.slots[self.free_slots[-1]].nbytes >= nbytes:
            index = self.free_slots.pop()
        else:
            index = len(self.slots)
            self.slots.append(self._region(f"p{index}", nbytes))
        region = self.slots[index]
        tag = region.array(np.int64, 1)
        tag[0] = -1
        dest = region.array(dtype, count, PARAMS_OFFSET)
        if isinstance(flat, np.ndarray):
            dest[:] = flat.reshape(-1)
        else:
            import torch
            torch.from_numpy(dest).copy_(flat.reshape(-1))
        tag[0] = t
        return ShmJob(index, t, bounds, dtype.str, count)

    def job_params(self, handle: ShmJob) -> np.ndarray:
        view = self.slots[handle.index].array(handle.dtype, handle.count, PARAMS_OFFSET)
        view.flags.writeable = False
        return view

    def release_job(self, handle: ShmJob) -> None:
        self.ray_jobs.pop(handle.index, None)
        self.free_slots.append(handle.index)

    def _ray_job(self, handle: ShmJob):
        import ray
        if handle.index not in self.ray_jobs:
            self.ray_jobs[handle.index] = ray.put((np.array(self.job_params(handle)),
                                                   handle.bounds))
        return self.ray_jobs[handle.index]

    # ---- calls ----------------------------------------------------------------------------
    def reserve_results(self, workers: int, per_worker: int, nbytes: int) -> None:
        self.results.reserve(workers, per_worker, nbytes)

    def _region(self, name: str, nbytes: int) -> Region:
        """A new region; page-locked when results are copied to a GPU (cudaHostRegister), so
        that copy runs at full speed with no staging copy."""
        region = Region(os.path.join(self.dir, name), nbytes, create=True)
        if self.pin:
            region.pin()
        return region

    def call(self, w: int, call: Call, send_ctx: bool, jobs: list, result_bytes: int = 0):
        self._poll_attach()
        sock = self.links.conns.get(w)
        if sock is None:  # down: through Ray until the restarted actor attaches again
            if w not in self.links.attaching:
                self._attach(w)
            return self.ray.call(w, call, send_ctx, [self._ray_job(h) for h in jobs])
        self.stats["shm_calls"] += 1
        seq = next(self._seq)
        handle = ShmCall(seq, w, self.results.lend(result_bytes, seq, w))
        self.inflight[seq] = handle
        out = self.results.buffers[handle.buffer].region
        regions = [JobRegion(h.job, self.slots[h.index].path, self.slots[h.index].nbytes,
                             h.dtype, h.count, h.bounds) for h in jobs]
        try:
            sock.sendall(frame(CallFrame(seq, call.encode(), regions, (out.path, out.nbytes))))
        except OSError:
            self._lost(w)
        return handle

    def _pump(self, timeout: float) -> None:
        """Read every frame that arrives within ``timeout`` s (at least one select)."""
        while self.links.conns:
            events = self.links.selector.select(max(0.0, timeout))
            if not events:
                return
            for key, _ in events:
                w = key.data
                if self.links.conns.get(w) is not key.fileobj:
                    continue  # lost while reading an earlier event
                try:
                    msg = recv_frame(key.fileobj)
                except OSError:
                    msg = None
                if not isinstance(msg, ReplyFrame):
                    self._lost(w)
                    continue
                call = self.inflight.pop(msg.seq, None)
                if call is not None:
                    self.replies[call.seq] = (msg.result, None)
                    self._drop_forgotten(call)
            timeout = 0.0

    def kill(self, w: int) -> None:
        self.ray.kill(w)

    def forget(self, calls: list) -> None:
        for call in calls:
            if isinstance(call, ShmCall):
                self.forgotten.add(call.seq)
                self._drop_forgotten(call)

    def _drop_forgotten(self, call: ShmCall) -> None:
        """A forgotten call that was answered: drop its reply and give its buffer back."""
        if call.seq in self.forgotten and call.seq in self.replies:
            self.forgotten.discard(call.seq)
            del self.replies[call.seq]
            self.results.give_back(call)

    def _answered(self, calls: list) -> list:
        return [c for c in calls if isinstance(c, ShmCall) and c.seq in self.replies]

    def wait(self, calls: list, timeout: float) -> list:
        refs = [c for c in calls if not isinstance(c, ShmCall)]
        deadline = time.perf_counter() + timeout
        while True:
            self._pump(0.0)
            done = self._answered(calls) + (self.ray.ready(refs) if refs else [])
            left = deadline - time.perf_counter()
            if done or left <= 0:
                return done
            self._poll_attach()
            step = min(left, _MIXED_POLL_S) if refs or self.links.attaching else left
            if self.links.conns:
                self._pump(step)
            else:
                time.sleep(step)

    def ready(self, calls: list) -> list:
        return self.wait(calls, 0.0)

    def fetch(self, calls: list) -> list[tuple[Result | None, str | None]]:
        refs = [c for c in calls if not isinstance(c, ShmCall)]
        via_ray = iter(self.ray.fetch(refs) if refs else [])
        return [self._result(c) if isinstance(c, ShmCall) else next(via_ray) for c in calls]

    def _result(self, call: ShmCall) -> tuple[Result | None, str | None]:
        """The answered call's Result, its array a read-only view of the call's buffer."""
        result, err = self.replies.pop(call.seq)
        meta = result.grads if err is None and isinstance(result, Result) else None
        if not isinstance(meta, InBuffer):
            self.results.give_back(call)  # no array of it goes out
        if err is not None:
            return None, err
        if isinstance(result, Result) and result.status == ERROR:
            if result.workload:  # the user's code raised
                return None, CodeFailure.of((result.error or "").removeprefix("raised "),
                                            result.message or "")
            return None, result.error or "raised an error"
        if isinstance(meta, InBuffer):
            result.grads = self.results.array_of(call, tuple(meta.shape), np.dtype(meta.dtype))
        return result, None

    def close(self) -> None:
        for w in list(self.links.conns):
            self.links.drop(w)
        self.links.selector.close()
        self.listener.close()
        for region in self.slots:
            region.close()
        self.results.close()
        shutil.rmtree(self.dir, ignore_errors=True)
