"""What the shared-memory transport's two ends share: message frames and shared-memory regions.

A frame is an 8-byte little-endian length and a pickle (protocol 5) of one of the typed
messages below: a :class:`Hello` naming the worker that connected, a :class:`CallFrame` (a
call's encoded header and the regions that hold its jobs' parameters and its result), or a
:class:`ReplyFrame` (the :class:`gcode.runtime.wire.Result`, its array left in the call's
buffer and described by an :class:`InBuffer`). Frames travel over a Unix socket between this
node's processes only; nothing is read from disk. A region is a file in shared memory
(``/dev/shm`` when it exists) mapped by both ends. A job's parameter region starts with a
64-byte header whose first int64 is the job it holds (-1 while it is written), so a reader can
tell that its copy was not torn.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import pickle
import socket
import tempfile
from typing import NamedTuple

import numpy as np

from ..errors import RunFailed

#: bytes before the data of a parameter region; its first int64 is the job it holds
PARAMS_OFFSET = 64
#: a frame longer than this is refused (frames carry headers, never arrays)
MAX_FRAME = 64 << 20
_LEN = 8


def shm_root() -> str:
    """Where regions live: ``/dev/shm`` (memory) when writable, else the temp folder."""
    root = "/dev/shm"
    return root if os.path.isdir(root) and os.access(root, os.W_OK) else tempfile.gettempdir()


class Hello(NamedTuple):
    """The first frame of a worker's connection."""

    worker: int
    pid: int


class JobRegion(NamedTuple):
    """Where a job's parameters lie: a region (path, size) holding ``count`` values of ``dtype``
    after its tag, and the job's chunk ranges."""

    job: int
    path: str
    nbytes: int
    dtype: str
    count: int
    bounds: tuple


class CallFrame(NamedTuple):
    """Call ``seq``: its encoded :class:`gcode.runtime.wire.Call`, its jobs' regions, and the
    result buffer (path, size) its array is written into."""

    seq: int
    header: bytes
    jobs: list[JobRegion]
    out: tuple[str, int]


class InBuffer(NamedTuple):
    """A result's array, left in its call's buffer: its shape and dtype."""

    shape: tuple[int, ...]
    dtype: str


class ReplyFrame(NamedTuple):
    """The answer to call ``seq``: a Result whose ``grads`` is an :class:`InBuffer` (or None)."""

    seq: int
    result: object


def frame(obj) -> bytes:
    data = pickle.dumps(obj, protocol=5)
    return len(data).to_bytes(_LEN, "little") + data


def _length(head: bytes) -> int:
    n = int.from_bytes(head, "little")
    if n > MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes (more than {MAX_FRAME})")
    return n


def recv_frame(sock: socket.socket):
    """The next frame's object, or None when the peer closed the connection."""
    head = sock.recv(_LEN, socket.MSG_WAITALL)
    if len(head) < _LEN:
        return None
    n = _length(head)
    body = sock.recv(n, socket.MSG_WAITALL) if n else b""
    if len(body) < n:
        return None
    return pickle.loads(body)


async def read_frame(reader: asyncio.StreamReader):
    """:func:`recv_frame` on an asyncio stream."""
    try:
        head = await reader.readexactly(_LEN)
        body = await reader.readexactly(_length(head))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return pickle.loads(body)


def _reserve(fd: int, nbytes: int, path: str) -> None:
    """Size a new region and reserve its memory now: a full ``/dev/shm`` is then a clear error
    here, not a SIGBUS when the region is first written."""
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        raise RunFailed(f"shared memory is full: cannot reserve {nbytes / 2**20:.1f} MiB for "
                        f"{path} ({exc.strerror}); give /dev/shm more room (docker run "
                        f"--shm-size) or use --transport ray") from None


class Region:
    """A shared-memory file mapped read-write: ``create`` makes it, ``open`` maps an existing one."""

    def __init__(self, path: str, nbytes: int, create: bool):
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                _reserve(fd, nbytes, path)
            self.mm = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        self.path, self.nbytes = path, nbytes
        self.pinned: int | None = None  # its address when page-locked for a GPU

    def array(self, dtype, count: int, offset: int = 0) -> np.ndarray:
        return np.frombuffer(self.mm, dtype=dtype, count=count, offset=offset)

    def tag(self) -> int:
        return int(self.array(np.int64, 1)[0])

    def pin(self) -> None:
        """Page-lock the mapping (``cudaHostRegister``) so that copies between it and a GPU run
        at full speed with no staging copy; best effort: it stays pageable on failure."""
        import torch
        view = self.array(np.uint8, self.nbytes)
        address = view.ctypes.data
        del view
        if int(torch.cuda.cudart().cudaHostRegister(address, self.nbytes, 1)) == 0:
            self.pinned = address

    def close(self) -> None:
        if self.pinned is not None:
            import torch
            torch.cuda.cudart().cudaHostUnregister(self.pinned)
            self.pinned = None
        try:
            self.mm.close()
        except BufferError:  # an array still views it: the mapping goes with that array
            pass
