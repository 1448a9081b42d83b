"""Binary trace files: ``.npy`` and protobuf ``gcode.v1.Trace``, read without pickle and
checked against the file's size before anything is allocated."""

from __future__ import annotations

import math
import os

import numpy as np


class TraceError(ValueError):
    """A trace file is malformed or too small; the message names the file, line and column."""


def check_times(times: np.ndarray, name: str) -> np.ndarray:
    """``times`` when it is a non-empty 2-D array of finite values > 0; TraceError naming the
    first bad value's 1-based row and column otherwise."""
    if times.ndim != 2 or 0 in times.shape:
        raise TraceError(f"{name}: a trace is a non-empty 2-D (rounds, workers) array, got shape "
                         f"{list(times.shape)}")
    good = np.isfinite(times) & (times > 0)
    if not good.all():
        row, col = np.argwhere(~good)[0]
        value = float(times[row, col])
        problem = "is not finite" if not math.isfinite(value) else "is not > 0"
        raise TraceError(f"{name}: row {row + 1}, column {col + 1}: time {value!r} {problem}")
    return times


def read_npy(path: str | os.PathLike[str], limit: int) -> np.ndarray:
    """A 2-D float32/float64 ``.npy`` trace as float64. The file must be at most ``limit``
    bytes, and its header must describe exactly the bytes that follow it; object arrays are
    refused (``allow_pickle=False``)."""
    name = os.fspath(path)
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise TraceError(f"{name}: {size} bytes, more than the {limit / 2**20:g} MiB a "
                                 f"trace may have")
            try:
                version = fmt.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = fmt.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = fmt.read_array_header_2_0(f)
                else:
                    raise TraceError(f"{name}: .npy format version {version} is not supported")
            except ValueError as exc:
                if isinstance(exc, TraceError):
                    raise
                raise TraceError(f"{name}: not a valid .npy file: {exc}") from None
            payload = size - f.tell()
    except OSError as exc:
        raise TraceError(f"{name}: cannot read the trace: {exc.strerror or exc}") from None
    if dtype.kind != "f" or dtype.itemsize not in (4, 8) or dtype.shape != ():
        raise TraceError(f"{name}: a trace holds float32 or float64 values, this .npy holds {dtype}")
    if len(shape) != 2 or 0 in shape:
        raise TraceError(f"{name}: a trace is a non-empty 2-D (rounds, workers) array, this .npy "
                         f"has shape {list(shape)}")
    if shape[0] * shape[1] * dtype.itemsize != payload:
        raise TraceError(f"{name}: the .npy header claims shape {list(shape)} of {dtype} "
                         f"({shape[0] * shape[1] * dtype.itemsize} bytes), the file holds {payload}")
    try:
        times = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TraceError(f"{name}: cannot read the .npy trace: {exc}") from None
    return check_times(np.ascontiguousarray(times, dtype=np.float64), name)


def write_npy(times: np.ndarray, f) -> None:
    """``np.save`` of ``times`` as float64, byte for byte, written through ``f.write`` (numpy's
    own path, ``tofile``, turns a refused write into an OSError that has lost its errno)."""
    array = np.ascontiguousarray(times, dtype="<f8")
    fmt = np.lib.format
    fmt.write_array_header_1_0(f, fmt.header_data_from_array_1_0(array))
    f.write(memoryview(array).cast("B"))


def read_proto(raw: bytes, name: str) -> np.ndarray:
    """A serialized ``gcode.v1.Trace`` (the bytes of file ``name``) as float64; its byte count
    must match its shape."""
    from google.protobuf.message import DecodeError

    from ..telemetry.messages import Trace, trace_from_proto
    try:
        message = Trace.FromString(raw)
    except DecodeError as exc:
        raise TraceError(f"{name}: not a gcode.v1.Trace protobuf: {exc}") from None
    if not message.shape and not message.times:
        raise TraceError(f"{name}: not a gcode.v1.Trace protobuf, or an empty trace")
    try:
        times = trace_from_proto(message)
    except ValueError as exc:
        raise TraceError(f"{name}: {exc}") from None
    return check_times(times, name)


def write_proto(times: np.ndarray, f, name: str) -> None:
    from ..telemetry.messages import trace_to_proto
    f.write(trace_to_proto(times, name).SerializeToString())
