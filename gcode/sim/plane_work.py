"""The CPU work of a round besides its transfers, per data plane: the network model's work terms
(:class:`gcode.sim.network.NetworkModel` composes one :class:`PlaneWork`).

* **collective**: per decode, every worker folds its coded results into the job's accumulator
  (Σ a·m, in the accumulator's dtype: fp32 for uncoded, fp64 for every code), steps its replica of
  the model with the all-reduced sum (every worker steps every replica), and every K-th decode
  digests its replicas for the identity check. Per worker and decode::

      worker_s = (folds · fold(dtype) + step + check / K) · d / cpu_share

  and the coordinator's calls, one per worker per round (``call_s`` each: sending the call,
  reading its reply, on the coordinator's one thread), add to the control round trip: ``n ·
  call_s``.
* **star**: per round, the coordinator sums the n coded gradients it received and steps the
  model once (its own costs where given, else the workers')::

      coordinator_s = (n · folds · coord_fold + coord_step) · d

  Its calls carry the parameters and the gradients: the star's fitted α_c, β_c hold their cost.

The step is the same on both planes (one step per decode: the coordinator's on the star, each
worker's replica at once on the collective); the fold is one message per worker on the
collective and n on the coordinator on the star. Costs are seconds per parameter on one core;
``cpu_share`` is the part of a core each worker gets: 1 where each has its own, c/n for n
emulated nodes on a machine of c cores (the coordinator works while the workers wait for it).
The step's cost depends on the optimizer: ``optimizer`` names the one the costs were measured for
(``benchmarks/work_calibration.py``).
The defaults are zero (no work modelled): a model with links only, as before these terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

#: the fields in seconds, that take a time unit in a ``--network`` spec (2ns, 0.002us, 1ms, ...)
TIMED = ("fold_fp32_s_per_param", "fold_fp64_s_per_param", "step_s_per_param", "check_s_per_param",
             "coord_fold_s_per_param", "coord_step_s_per_param", "call_s")


@dataclass(frozen=True)
class PlaneWork:
    """Per-parameter CPU costs of a round's fold, step and check (seconds per parameter on one
    core), how often the replicas are checked, and each worker's share of a core."""

    fold_fp32_s_per_param: float = 0.0  # s per parameter: one coded message folded into an fp32 accumulator
    fold_fp64_s_per_param: float = 0.0  # s per parameter: the same into an fp64 accumulator (every code)
    step_s_per_param: float = 0.0       # s per parameter: one replica's step (norm, cast, the optimizer's)
    check_s_per_param: float = 0.0      # s per parameter: one replica check (digest of parameters and state)
    check_every: int = 10               # K: decodes per replica check (gcode's CHECK_EVERY)
    folds: float = 1.0                  # coded messages a worker folds per decode (1 for uncoded and GC)
    cpu_share: float = 1.0              # cores per worker (1: its own; n emulated nodes on c cores: c/n)
    call_s: float = 0.0                 # s per worker call per round on the coordinator (collective control)
    coord_fold_s_per_param: float | None = None  # s per parameter per message the star's coordinator
    #                                              sums (None: fold_*_s_per_param)
    coord_step_s_per_param: float | None = None  # s per parameter of the star coordinator's step
    #                                              (None: step_s_per_param)
    optimizer: str = ""                 # the optimizer the step's cost was measured for (documentation)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "optimizer":
                if not isinstance(value, str):
                    raise ValueError(f"network optimizer must be a name, got {value!r}")
                continue
            if value is None and f.name.startswith("coord_"):
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value)) or value < 0:
                raise ValueError(f"network {f.name} must be a finite number >= 0, got {value!r}")
        if self.check_every < 1 or self.check_every != int(self.check_every):
            raise ValueError(f"network check_every must be a whole number >= 1, got {self.check_every!r}")
        if self.cpu_share <= 0:
            raise ValueError(f"network cpu_share must be > 0, got {self.cpu_share!r}")

    @property
    def modelled(self) -> bool:
        """Whether any work is modelled (some cost above zero)."""
        return any((getattr(self, name) or 0) > 0 for name in TIMED)

    def fold_s_per_param(self, nbytes: int) -> float:
        """One message folded, per parameter, into an accumulator of ``nbytes`` per value (4: fp32)."""
        return self.fold_fp32_s_per_param if nbytes <= 4 else self.fold_fp64_s_per_param

    def worker_s_per_param(self, accumulate_bytes: int) -> float:
        """A collective worker's seconds per parameter per decode: fold, step, the check's share."""
        return (self.folds * self.fold_s_per_param(accumulate_bytes) + self.step_s_per_param
                + self.check_s_per_param / self.check_every) / self.cpu_share

    def coordinator_s_per_param(self, n, message_bytes: int):
        """The star coordinator's seconds per parameter per round: n workers' messages summed, one step."""
        fold = self.fold_s_per_param(message_bytes) if self.coord_fold_s_per_param is None \
            else self.coord_fold_s_per_param
        step = self.step_s_per_param if self.coord_step_s_per_param is None else self.coord_step_s_per_param
        return n * self.folds * fold + step

    def calls_s(self, n):
        """The coordinator's calls of one collective round (one per worker)."""
        return n * self.call_s

    def worker_s(self, params: float, accumulate_bytes: int) -> float:
        return self.worker_s_per_param(accumulate_bytes) * params

    def coordinator_s(self, n, params: float, message_bytes: int):
        return self.coordinator_s_per_param(n, message_bytes) * params
