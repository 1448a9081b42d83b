"""A network model (α latency, β bandwidth) for the two data planes, so that the choice between
them can be planned at scale before it is run.

Notation: n workers, d parameters of b bytes each (D = d·b bytes per gradient or parameter
vector), c bytes per control message (a worker's "done" report, or its decode coefficients).
Each link has a latency α (seconds per message) and a bandwidth β (bytes per second): the
workers' links (α, β) and the coordinator's link (α_c, β_c), and a control message's latency α_ctl
(default α_c: a Ray actor call can cost less than a transfer through the object store). A
transfer of m bytes over a link
takes α + m/β; a message crosses a worker's link and the coordinator's, so a batch of n
concurrent messages between the coordinator and the workers takes α_c + max(n·m/β_c, m/β).

* **star** (today's plane): per round with tasks, the parameters go out to n workers and n coded
  gradients come back, both through the coordinator's one link::

      star_round = 2 · (α_c + max(n·D/β_c, D/β))

* **collective**: per round with tasks, a control round trip (n done reports in, n coefficient
  messages out); per decoded job, a ring allreduce of D bytes among the n workers, whose
  2(n−1) steps each move D/n bytes over every worker's link::

      control   = 2 · (α_ctl + max(n·c/β_c, c/β))
      allreduce = 2(n−1) · α + 2(n−1)/n · D/β

  ``zero=1`` (reduce-scatter, then all-gather) moves the same bytes in the same steps.

A run's communication adds to its compute: the simulator's runtime plus, for the star,
``star_round`` per round with tasks, and for the collective ``control`` per round with tasks
plus ``allreduce`` per decoded job (one per round in steady state). No overlap of communication
with compute is modelled (an upper bound where the live coordinator pipelines rounds), nor the
coordinator's decode: the star's sum on the coordinator costs on top, the collective's fold is
part of each worker's compute. Since compute is the same on both planes, where the star stops
paying depends on the network alone (:func:`star_pays`, :meth:`NetworkModel.break_even_params`).
A star round moves at least 2D over each worker's link, a ring 2(n−1)/n·D: the star pays only
where latency dominates (small d, or a collective of many steps), whatever the coordinator's
link. On one node the star's gradients go through shared memory, not links; this model is for
multi-node runs.

:func:`fit_link` fits α and β to measured (bytes, seconds) samples (least squares, both ≥ 0),
for calibration against runs on real or emulated links (``cluster/netns.sh``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

#: bandwidth suffixes (bytes per second: value x 8 / divisor for bits) and latency suffixes
#: (seconds: value / divisor, so that 50us is exactly 50e-6)
_RATE_UNITS = {"gbit": 8e-9, "mbit": 8e-6, "kbit": 8e-3, "gb": 1e-9, "mb": 1e-6, "kb": 1e-3}
_TIME_UNITS = {"us": 1e6, "ms": 1e3, "s": 1.0}
_VALUE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*")


@dataclass(frozen=True)
class NetworkModel:
    """Links and message sizes of one network. Defaults: 10 Gbit/s worker links with 50 µs
    latency, a coordinator link of the same kind, d = 11.2M fp32 parameters (ResNet-18)."""

    alpha: float = 50e-6           # s per message over a worker's link
    beta: float = 1.25e9           # bytes/s of a worker's link
    coord_alpha: float | None = None  # s per message over the coordinator's link (default alpha)
    coord_beta: float | None = None   # bytes/s of the coordinator's link (default beta)
    control_alpha: float | None = None  # s per control message (default coord_alpha)
    params: float = 11.2e6         # d, values per gradient
    bytes: int = 4                 # b, bytes per value (4: fp32 messages; 8: fp64)
    control_bytes: int = 256       # c, bytes of one control message

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"network {f.name} must be a finite number, got {value!r}")
            if value < 0 or (value == 0 and f.name in ("beta", "coord_beta", "params", "bytes")):
                raise ValueError(f"network {f.name} must be {'>= 0' if 'alpha' in f.name else '> 0'}, "
                                 f"got {value!r}")

    @property
    def a_c(self) -> float:
        return self.alpha if self.coord_alpha is None else self.coord_alpha

    @property
    def a_ctl(self) -> float:
        return self.a_c if self.control_alpha is None else self.control_alpha

    @property
    def b_c(self) -> float:
        return self.beta if self.coord_beta is None else self.coord_beta

    @property
    def message_bytes(self) -> float:
        """D = d·b, the bytes of one gradient or parameter vector."""
        return self.params * self.bytes

    def with_params(self, params: float) -> NetworkModel:
        return replace(self, params=params)

    # ---- per-round costs (seconds); n may be an int or a numpy array
    def _fan(self, n, nbytes: float, alpha: float | None = None):
        """n concurrent messages of ``nbytes`` between the coordinator and the workers."""
        return (self.a_c if alpha is None else alpha) + np.maximum(n * nbytes / self.b_c, nbytes / self.beta)

    def star_round(self, n):
        """Parameters out and n coded gradients in, through the coordinator's link."""
        return 2 * self._fan(n, self.message_bytes)

    def control_round(self, n):
        """The collective plane's round trip: n done reports in, n coefficient messages out."""
        return 2 * self._fan(n, self.control_bytes, self.a_ctl)

    def allreduce(self, n):
        """A ring allreduce of D bytes among n workers (0 for n = 1)."""
        steps = 2 * (np.asarray(n) - 1)
        return steps * self.alpha + steps / n * self.message_bytes / self.beta

    def collective_round(self, n):
        """A steady-state round of the collective plane: control, plus one job's allreduce."""
        return self.control_round(n) + self.allreduce(n)

    def break_even_params(self, n) -> float:
        """The d below which a star round costs less than a steady collective round at n
        workers: both are affine in d and the star's slope is the steeper (it moves at least 2D
        over a worker's link, the ring 2(n−1)/n·D), so there is one crossing; 0 where the star
        costs more at every d (its fixed cost, 2α_c, above the collective's)."""
        fixed = float(self.control_round(n)) + 2 * (n - 1) * self.alpha - 2 * self.a_c
        slope = 2 * max(n / self.b_c, 1 / self.beta) - 2 * (n - 1) / (n * self.beta)
        return max(0.0, fixed / slope / self.bytes)

    def coordinator_bytes(self, n) -> dict:
        """Bytes through the coordinator's link per round, each plane (both directions)."""
        return {"star": 2 * n * self.message_bytes, "collective": 2 * n * self.control_bytes}

    def run_costs(self, n: int, task_rounds: int, decoded_jobs: int, compute_s: float) -> dict:
        """Each plane's communication over a run, and its runtime with the compute added."""
        star = task_rounds * float(self.star_round(n))
        collective = task_rounds * float(self.control_round(n)) + decoded_jobs * float(self.allreduce(n))
        bytes_ = self.coordinator_bytes(n)
        per_round = max(task_rounds, 1)
        return {plane: {"comm_s": comm, "comm_s_per_round": comm / per_round, "runtime_s": compute_s + comm,
                        "coordinator_bytes_per_round": float(bytes_[plane])}
                for plane, comm in (("star", star), ("collective", collective))}

    def describe(self) -> str:
        coord = "" if self.coord_alpha is None and self.coord_beta is None else \
            f", coordinator alpha={self.a_c:g}s beta={self.b_c:.4g}B/s"
        if self.control_alpha is not None:
            coord += f", control alpha={self.a_ctl:g}s"
        return (f"alpha={self.alpha:g}s beta={self.beta:.4g}B/s{coord}, d={self.params:.4g} x "
                f"{self.bytes} B, control {self.control_bytes} B")

    def as_dict(self) -> dict:
        return {**asdict(self), "coord_alpha": self.a_c, "coord_beta": self.b_c, "control_alpha": self.a_ctl}

    @classmethod
    def parse(cls, text: str) -> NetworkModel:
        """``alpha=50us,beta=10gbit,coord_beta=100gbit,params=1e9,bytes=4`` (every key optional;
        alpha/coord_alpha/control_alpha take us, ms or s; beta/coord_beta take gbit, mbit, kbit,
        GB, MB, kB per second, or plain bytes per second)."""
        names = {f.name for f in fields(cls)}
        values: dict = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise ValueError(f"--network: expected KEY=VALUE with KEY among {', '.join(sorted(names))}, "
                                 f"got {item!r}")
            if key in values:
                raise ValueError(f"--network: {key} given twice")
            units = _TIME_UNITS if "alpha" in key else _RATE_UNITS if "beta" in key else {}
            values[key] = _number(key, raw, units)
            if key in ("bytes", "control_bytes"):
                if values[key] != int(values[key]):
                    raise ValueError(f"--network: {key} must be a whole number of bytes, got {raw!r}")
                values[key] = int(values[key])
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"--network: {exc}") from None


def _number(key: str, raw: str, units: dict) -> float:
    match = _VALUE.fullmatch(raw)
    unit = match.group(2).lower() if match else ""
    if not match or (unit and unit not in units):
        allowed = f" with an optional unit ({', '.join(units)})" if units else ""
        raise ValueError(f"--network: {key} must be a number{allowed}, got {raw!r}")
    return float(match.group(1)) / (units[unit] if unit else 1.0)


def star_pays(model: NetworkModel, n_max: int = 100_000) -> list[tuple[int, int]]:
    """The ranges [lo, hi] of n in 2..n_max where a star round costs no more than a steady
    collective round (compute is the same on both planes, so it cancels)."""
    n = np.arange(2, n_max + 1)
    pays = model.star_round(n) <= model.collective_round(n)
    edges = np.flatnonzero(np.diff(np.concatenate([[False], pays, [False]]).astype(np.int8)))
    return [(int(n[lo]), int(n[hi - 1])) for lo, hi in zip(edges[::2], edges[1::2])]


def fit_link(samples, steps=None) -> dict:
    """α and β fitted to measured transfers: ``samples`` is (bytes, seconds) pairs, each time
    modelled as ``steps·α + bytes/β`` (``steps`` per sample, default 1; a ring allreduce of D
    bytes among n is 2(n−1) steps of 2(n−1)/n·D bytes per link in all). Non-negative least
    squares; returns alpha, beta (inf when the bytes explain nothing), the fit's relative RMS
    error and the sample count."""
    from scipy.optimize import nnls
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 2 or data.shape[0] < 2:
        raise ValueError("fit_link needs at least two (bytes, seconds) samples")
    if not np.isfinite(data).all() or (data <= 0).any():
        raise ValueError("fit_link: bytes and seconds must be finite and > 0")
    nbytes, seconds = data[:, 0], data[:, 1]
    steps = np.ones_like(seconds) if steps is None else np.asarray(steps, dtype=np.float64)
    if steps.shape != seconds.shape:
        raise ValueError(f"fit_link: {steps.size} steps for {seconds.size} samples")
    # relative errors weigh small and large transfers alike
    design = np.stack([steps, nbytes], axis=1) / seconds[:, None]
    (alpha, inv_beta), _ = nnls(design, np.ones_like(seconds))
    predicted = steps * alpha + nbytes * inv_beta
    rel = float(np.sqrt(np.mean((predicted / seconds - 1) ** 2)))
    return {"alpha": float(alpha), "beta": float(1 / inv_beta) if inv_beta > 0 else math.inf,
            "rel_rms": rel, "samples": int(seconds.size)}


def network_arg(text: str) -> NetworkModel:
    """argparse ``type=`` for ``--network`` (a one-line error naming the key)."""
    import argparse
    try:
        return NetworkModel.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--network: ")) from None
