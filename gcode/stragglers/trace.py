"""Replaying measured round times from a trace file (rows = rounds, columns = workers, seconds).

Three formats, chosen by the file (never by pickle):

* CSV, no header: parsed by numpy's C parser when the file is plain (digits, signs, points,
  exponents, commas, spaces, LF or CRLF line ends); anything else, and any file that fails a
  check, goes through a strict line-by-line parser that names the file, line and column;
* ``.npy``: a 2-D float array, its header checked against the file's size before anything is
  allocated, read with ``allow_pickle=False``;
* ``.pb``: a serialized ``gcode.v1.Trace`` (proto/gcode/v1/run.proto).

``gcode trace convert IN OUT`` converts between them (:func:`save_trace`).
"""

from __future__ import annotations

import io
import math
import os
import stat
from dataclasses import dataclass, field

import numpy as np

from ._validate import require_positive
from .base import DelayModel
from .trace_binary import TraceError, check_times, read_npy, read_proto, write_npy, write_proto

TRACE_FORMATS = ("csv", "npy", "pb")
_SUFFIXES = {".npy": "npy", ".pb": "pb", ".binpb": "pb", ".csv": "csv"}
_NPY_MAGIC = b"\x93NUMPY"
#: the bytes a CSV may hold for numpy's parser to read it; anything else takes the strict path
_PLAIN_CSV_BYTES = b"0123456789.,+-eE \t\r\n"


def trace_format(path: str | os.PathLike[str]) -> str:
    """'npy' (by its magic bytes or suffix), 'pb' (suffix .pb or .binpb) or 'csv'."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise TraceError(f"{os.fspath(path)}: not a regular file (a trace must be a file)")
    with open(path, "rb") as f:
        if f.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
            return "npy"
    return _SUFFIXES.get(os.path.splitext(os.fspath(path))[1].lower(), "csv")


def load_trace(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a trace file into a (rounds, workers) float64 array.

    Invariants of the result: at least one row and one column, rectangular, every value finite
    and > 0. Anything else raises TraceError naming the file and the 1-based line and column
    (row and column for the binary formats); a file larger than
    :data:`gcode.limits.MAX_TRACE_BYTES` is refused before it is read.
    """
    from ..limits import MAX_TRACE_BYTES, read_bytes
    name = os.fspath(path)
    try:
        kind = trace_format(path)
        raw = None if kind == "npy" else read_bytes(path, MAX_TRACE_BYTES, "trace")
    except OSError as exc:
        raise TraceError(f"{name}: cannot read the trace: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise TraceError(str(exc)) from None
    if kind == "npy":
        return read_npy(path, MAX_TRACE_BYTES)
    if kind == "pb":
        return read_proto(raw, name)
    times = _parse_plain_csv(raw)
    return times if times is not None else _parse_csv_strictly(raw, name)


def save_trace(times: np.ndarray, path: str | os.PathLike[str], name: str = "") -> str:
    """Write ``times`` to ``path`` in the format its suffix names (.csv, .npy, .pb; CSV values
    round-trip exactly); returns the format. The file is replaced atomically."""
    name = name or os.fspath(path)
    times = check_times(np.asarray(times, dtype=np.float64), name)
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in _SUFFIXES:
        raise TraceError(f"{os.fspath(path)}: unknown trace format {suffix!r}; use .csv, .npy or .pb")
    kind = _SUFFIXES[suffix]
    from ..paths import atomic_output
    try:
        with atomic_output(path) as f:
            if kind == "npy":
                write_npy(times, f)
            elif kind == "pb":
                write_proto(times, f, os.path.basename(name))
            else:
                np.savetxt(f, times, fmt="%.17g", delimiter=",")
    except OSError as exc:
        raise TraceError(f"{os.fspath(path)}: cannot write the trace: {exc.strerror or exc}") from None
    return kind


def _parse_plain_csv(raw: bytes) -> np.ndarray | None:
    """The trace, parsed by numpy's C parser, when the file is plain and passes every check the
    strict parser makes; None otherwise (the strict parser then decides, and names the line)."""
    if not raw or raw.translate(None, _PLAIN_CSV_BYTES) or raw.count(b"\r") != raw.count(b"\r\n"):
        return None
    lines = raw.count(b"\n") + (not raw.endswith(b"\n"))
    try:
        times = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.float64, encoding="ascii",
                           comments=None, quotechar=None, ndmin=2)
    except ValueError:
        return None
    # numpy skips blank lines, which the strict parser refuses: the row count must match
    if times.shape[0] != lines or times.shape[1] == 0 or not (np.isfinite(times) & (times > 0)).all():
        return None
    return times


def _cell(text: str) -> float | None:
    """The cell's value, or None when it is not a plain decimal number (float() would also take
    digit separators such as '1_000')."""
    if "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _parse_csv_strictly(raw: bytes, name: str) -> np.ndarray:
    from ..limits import decode_utf8
    try:
        text = decode_utf8(raw, name)
    except ValueError as exc:
        raise TraceError(str(exc)) from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise TraceError(f"{name}: empty file, expected rows of comma-separated round times")
    rows: list[np.ndarray] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            raise TraceError(f"{name}: line {lineno} is empty")
        cells = line.split(",")
        values = [_cell(c) for c in cells]
        if lineno == 1 and all(v is None for v in values):
            raise TraceError(
                f"{name}: line 1, column 1: {cells[0].strip()!r} is not a number; line 1 looks "
                "like a header, but traces have none: delete that line"
            )
        if rows and len(values) != len(rows[0]):
            raise TraceError(
                f"{name}: line {lineno} has {len(values)} columns, expected {len(rows[0])}"
            )
        for col, (cell, v) in enumerate(zip(cells, values), start=1):
            where = f"{name}: line {lineno}, column {col}"
            if v is None:
                raise TraceError(f"{where}: {cell.strip()!r} is not a number")
            if not math.isfinite(v):
                raise TraceError(f"{where}: {cell.strip()!r} is not finite")
            if v <= 0:
                raise TraceError(f"{where}: time {cell.strip()} is not > 0")
        rows.append(np.array(values, dtype=np.float64))  # 8 bytes a value, not a Python float
    return np.vstack(rows)


@dataclass(frozen=True)
class TraceDelay(DelayModel):
    """Replays the first rounds and workers of a trace, times multiplied by time_scale.

    The file is loaded and validated at construction; ``times`` holds it, read-only. The seed
    is ignored: a trace is deterministic.
    """

    path: str | os.PathLike[str]
    time_scale: float = 1.0
    times: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_positive("time_scale", self.time_scale)
        times = load_trace(self.path)
        times.setflags(write=False)
        object.__setattr__(self, "times", times)

    def _sample(self, rounds: int, n: int, rng: np.random.Generator) -> np.ndarray:
        have_rounds, have_n = self.times.shape
        if rounds > have_rounds or n > have_n:
            raise TraceError(
                f"{os.fspath(self.path)}: trace has {have_rounds} rounds x {have_n} workers, "
                f"asked for {rounds} rounds x {n} workers"
            )
        return self.times[:rounds, :n] * self.time_scale
