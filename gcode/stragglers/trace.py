"""Replaying measured round times from a CSV trace (rows = rounds, columns = workers, seconds,
no header), parsed strictly and without pickle."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ._validate import require_positive
from .base import DelayModel


class TraceError(ValueError):
    """A trace file is malformed or too small; the message names the file, line and column."""


def _cell(text: str) -> float | None:
    """The cell's value, or None when it is not a plain decimal number (float() would also take
    digit separators such as '1_000')."""
    if "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def load_trace(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a trace CSV into a (rounds, workers) float64 array.

    Invariants of the result: at least one row and one column, rectangular, every value finite
    and > 0. Anything else raises TraceError naming the file and the 1-based line and column;
    a file larger than :data:`gcode.limits.MAX_TRACE_BYTES` is refused before it is read.
    """
    from ..limits import MAX_TRACE_BYTES, read_text
    try:
        text = read_text(path, MAX_TRACE_BYTES, "trace")
    except ValueError as exc:
        raise TraceError(str(exc)) from None
    name = os.fspath(path)
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise TraceError(f"{name}: empty file, expected rows of comma-separated round times")
    rows: list[list[float]] = []
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
