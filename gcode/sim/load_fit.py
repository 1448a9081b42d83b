"""Fit the load model (additive or proportional, with its slope) from measured task times.

A worker's time in a round at load L splits into a part that grows with its work, ``compute``
(what a live worker reports as compute_s; the simulator hands the same part to its policy), and
a part that does not, d = time − compute (a call's fixed cost, an injected delay). If compute is
proportional to L, at another load L′ the worker takes d + compute·L′/L. The two models err by:
  * additive (time + (L′−L)·slope, slope = median compute / L): |compute − median| · |L′/L − 1|,
  * proportional (time · L′/L): d · |L′/L − 1|,
so the fit picks additive when the workers' compute times spread less than their fixed parts
(Lambda calls, injected delays) and proportional when the fixed part is small against the
spread (a GPU cluster whose slow workers are slow on every sample). Both errors carry the same
factor |L′/L − 1|, so the choice holds for every candidate load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .load_model import LoadModel


@dataclass
class LoadFit:
    """Running sums of the two models' errors over the rounds seen (arrived workers only)."""

    additive_error: float = 0.0
    proportional_error: float = 0.0
    slopes: list[float] = field(default_factory=list)  # median compute / L, per round
    rounds: int = 0
    keep: int = 64  # rounds of slopes kept (the median of these is the slope)

    def add(self, times: np.ndarray, compute: np.ndarray, load: float) -> None:
        """One round: per-worker times and their compute part (NaN: no result), at ``load``."""
        times, compute = np.asarray(times, dtype=np.float64), np.asarray(compute, dtype=np.float64)
        seen = np.isfinite(times) & np.isfinite(compute)
        if not seen.any() or not load > 0:
            return
        c = compute[seen]
        fixed = np.maximum(times[seen] - c, 0.0)
        median = float(np.median(c))
        self.additive_error += float(np.abs(c - median).mean())
        self.proportional_error += float(fixed.mean())
        self.slopes = (self.slopes + [median / load])[-self.keep:]
        self.rounds += 1

    def model(self, prior: LoadModel) -> LoadModel:
        """The fitted model; ``prior`` until a round was seen."""
        if not self.rounds:
            return prior
        if self.additive_error < self.proportional_error:
            return LoadModel("additive", float(np.median(self.slopes)))
        return LoadModel("proportional")

    def state(self) -> dict:
        return {"additive_error": self.additive_error, "proportional_error": self.proportional_error,
                "slopes": list(self.slopes), "rounds": self.rounds}

    @classmethod
    def from_state(cls, state: dict) -> LoadFit:
        return cls(float(state["additive_error"]), float(state["proportional_error"]),
                   [float(v) for v in state["slopes"]], int(state["rounds"]))
