"""How a worker's round time grows with its normalized load L (the data it processes per round).

* ``additive``: ``trace·time_scale + intercept + L·slope``. A call has a fixed cost that the
  trace records, and the work adds ``slope`` seconds per unit load, the same for every worker.
  This fits AWS Lambda, where the traces were recorded at zero load (the paper's model, with no
  intercept). ``intercept`` is a per-call cost the trace does not hold, such as a live
  runtime's dispatch overhead (``gcode bench live`` calibrates it).
* ``proportional``: ``trace·time_scale·L/trace_load``. A worker's time is proportional to its
  work, so a slow worker is slow on every sample. This fits a GPU cluster; ``trace_load`` is the
  load at which the trace was recorded (default 1/n: one uncoded share per worker).

Both are an affine map ``time = scale·base + offset`` of the base time ``base = trace·time_scale``
with ``scale > 0``, so they keep the order of the workers within a round: the vectorized tuner
relies on that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOAD_MODELS = ("additive", "proportional")


@dataclass(frozen=True)
class LoadModel:
    kind: str = "additive"
    slope: float = 0.0                # additive: seconds per unit of normalized load
    trace_load: float | None = None   # proportional: the trace's load; None: 1/n
    intercept: float = 0.0            # additive: seconds added to every call

    def __post_init__(self):
        if self.kind not in LOAD_MODELS:
            raise ValueError(f"load model must be one of {', '.join(LOAD_MODELS)}, got {self.kind!r}")
        if not self.slope >= 0:
            raise ValueError(f"load_slope must be >= 0, got load_slope={self.slope}")
        if not self.intercept >= 0:
            raise ValueError(f"intercept must be >= 0, got intercept={self.intercept}")
        if self.kind == "proportional" and self.intercept:
            raise ValueError("intercept applies to the additive load model only")
        if self.trace_load is not None and not 0 < self.trace_load <= 1:
            raise ValueError(f"trace_load must be in (0, 1], got trace_load={self.trace_load}")

    @classmethod
    def of(cls, spec: LoadModel | float) -> LoadModel:
        """``spec`` itself, or the additive model with slope ``spec`` (the older float form)."""
        return spec if isinstance(spec, LoadModel) else cls("additive", float(spec))

    def affine(self, loads, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale, offset) for each load: time = scale·base + offset."""
        loads = np.asarray(loads, dtype=np.float64)
        if self.kind == "additive":
            return np.ones_like(loads), loads * self.slope + self.intercept
        reference = self.trace_load if self.trace_load is not None else 1.0 / n
        return loads / reference, np.zeros_like(loads)

    def times(self, base: np.ndarray, load: float) -> np.ndarray:
        """Round times of workers whose base times are ``base``, at normalized load ``load``."""
        scale, offset = self.affine(load, np.shape(base)[-1])
        return np.asarray(base, dtype=np.float64) * scale + offset

    def base(self, times: np.ndarray, load: float) -> np.ndarray:
        """The inverse of :meth:`times`: what the workers would take at the trace's load."""
        scale, offset = self.affine(load, np.shape(times)[-1])
        return (np.asarray(times, dtype=np.float64) - offset) / scale

    def describe(self) -> str:
        if self.kind == "additive":
            return f"additive, load slope={self.slope} s" + (
                f", intercept={self.intercept} s" if self.intercept else "")
        return f"proportional, trace load={self.trace_load if self.trace_load is not None else '1/n'}"
