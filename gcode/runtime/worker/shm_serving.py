"""The worker's end of the shared-memory transport (:mod:`gcode.runtime.transport.shm`).

The actor's ``attach`` adopts the run's context and starts a :class:`ShmServer`, which connects
to the coordinator's socket and serves calls until the coordinator closes it. Each call frame
becomes one task on the actor's event loop, running the same :meth:`GradientWorker.work` as a
Ray call, so a newer round's frame makes an older call stale exactly as it does there.
Parameters are read from the job's region and checked against its tag after loading; results
are written into the buffer the call names.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np

from ..transport.shm_frames import (
    PARAMS_OFFSET,
    CallFrame,
    Hello,
    InBuffer,
    Region,
    ReplyFrame,
    frame,
    read_frame,
)
from ..wire import ERROR, Call, Result


class ShmServer:
    """Serves one coordinator connection for ``worker`` (a GradientWorker that adopted the run's
    context)."""

    def __init__(self, worker):
        self.worker = worker
        self.serving: asyncio.Future | None = None

    async def start(self, ctl_path: str) -> None:
        """Connect to ``ctl_path`` and serve its calls in the background (until the coordinator
        closes the connection)."""
        reader, writer = await asyncio.open_unix_connection(ctl_path)
        writer.write(frame(Hello(self.worker.index, os.getpid())))
        await writer.drain()
        self.serving = asyncio.ensure_future(self._serve(reader, writer))

    async def _serve(self, reader, writer) -> None:
        regions: dict[str, Region] = {}
        calls: set = set()
        try:
            while (msg := await read_frame(reader)) is not None:
                task = asyncio.ensure_future(self._serve_call(msg, writer, regions))
                calls.add(task)
                task.add_done_callback(calls.discard)
        finally:
            for task in calls:
                task.cancel()
            writer.close()
            for region in regions.values():
                region.close()

    def _region(self, regions: dict, path: str, nbytes: int) -> Region:
        """The region at ``path``, mapped once; page-locked on a GPU worker, so that results
        copy from the device into it at full speed."""
        region = regions.get(path)
        if region is None or region.nbytes != nbytes:
            region = regions[path] = Region(path, nbytes, create=False)
            if self.worker.computer.device.type == "cuda":
                region.pin()
        return region

    async def _serve_call(self, msg: CallFrame, writer, regions: dict) -> None:
        from gcode.train.compute import TaskError
        from gcode.train.workload import WorkloadError
        call = None
        try:
            call = Call.decode(msg.header)
            data = {}
            for job in msg.jobs:
                region = self._region(regions, job.path, job.nbytes)
                data[job.job] = (region.array(job.dtype, job.count, PARAMS_OFFSET), job.bounds,
                                 lambda region=region, job=job.job: region.tag() == job)
            out = None
            if call.tasks:  # the buffer holds (tasks, num_params) in the message dtype
                shape = (len(call.tasks), self.worker.spec.num_params)
                out_region = self._region(regions, *msg.out)
                out = out_region.array(call.dtype, shape[0] * shape[1]).reshape(shape)
            reply = await self.worker.work(call, data, out)
            grads = reply.grads
            if grads is not None:  # the array travels in the buffer; its shape in the frame
                reply.grads = InBuffer(grads.shape, grads.dtype.str)
                fits = out is not None and grads.nbytes <= out.nbytes
                if fits and not _is_view_of(grads, out):  # a fault made a new array
                    flat = np.ascontiguousarray(grads).reshape(-1)
                    out.reshape(-1).view(grads.dtype)[:flat.size] = flat
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator as a failure
            reply = Result(status=ERROR, round=call.round if call else -1, worker=self.worker.index,
                           error=f"raised {type(exc).__name__}", message=str(exc)[:2000],
                           workload=isinstance(exc, (WorkloadError, TaskError)))
        try:
            writer.write(frame(ReplyFrame(msg.seq, reply)))
        except (ConnectionError, RuntimeError):  # the coordinator went away
            pass


def _is_view_of(array: np.ndarray, buffer: np.ndarray) -> bool:
    """Whether ``array`` is ``buffer`` itself (same start, C order), so nothing needs copying."""
    return (array.flags.c_contiguous and array.dtype == buffer.dtype
            and array.__array_interface__["data"][0] == buffer.__array_interface__["data"][0])
