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

      star_comm = 2 · (α_c + max(n·D/β_c, D/β))       star_round = star_comm + star_work

* **collective**: per round with tasks, a control round trip (n done reports in, n coefficient
  messages out); per decoded job, a ring allreduce of D bytes among the n workers, whose
  2(n−1) steps each move D/n bytes over every worker's link::

      control   = 2 · (α_ctl + max(n·c/β_c, c/β)) + n · call_s
      allreduce = 2(n−1) · α + 2(n−1)/n · D/β

  (``call_s``: the coordinator's work per worker call, a :class:`PlaneWork` term, 0 unless given.)

  ``zero=1`` (reduce-scatter, then all-gather) moves the same bytes in the same steps.

* **a shared host** (``host_beta``, bytes/s; None: each node has CPUs of its own): where n nodes
  are emulated on one machine (``cluster/netns.sh``), the machine's CPUs copy every byte every
  node sends, so a ring's time grows with the 2(n−1)·D bytes all ranks send together, not only
  with the bytes per link. Measured here at 10 Gbit/s the links never bind: a 13 MB allreduce
  took 49 ms among 4 nodes and 123 ms among 8 (1.6 and 1.5 GB/s of the host's copying, against
  16 and 18 ms at the links' rate). The term adds, as the fit finds it (:func:`fit_link` with
  ``host_bytes``): ``allreduce += 2(n−1)·D / host_beta``. The star's transfers grow with n·D
  through the coordinator's link either way, so its fitted β_c already holds the host's share.
* **k workers per node** (``workers_per_node``): the object store sends the parameters once per
  node (ceil(n/k) copies through the coordinator's link), each node's link carries its k workers'
  gradients, and a ring whose ranks are not ordered by node puts k of its edges on each node's
  link (gcode's group ranks the workers by their place in the pool, not by node).
* **work** (:class:`gcode.sim.plane_work.PlaneWork`): the collective plane's fold, replica step
  and check on every worker per decode, the star's sum of n messages and step on the coordinator
  per round, in seconds per parameter; zero unless given (links only).

The collective's allreduce and fold run in the accumulator's dtype (``accumulate_bytes``, default
``bytes``): fp32 for uncoded, fp64 for every code (:func:`gcode.runtime.run.accumulate_dtype`).

A run's communication adds to its compute: the simulator's runtime plus, for the star,
``star_round`` (with the coordinator's work) per round with tasks, and for the collective
``control`` per round with tasks plus ``allreduce`` and the workers' work per decoded job (one per
round in steady state). No overlap of communication with compute is modelled (an upper bound
where the live coordinator pipelines rounds). Since compute is the same on both planes, where the
star stops paying depends on the network and the planes' own work alone (:func:`star_pays`,
:meth:`NetworkModel.break_even_params`). With the links alone and the same bytes per value, a
star round moves at least 2D over each worker's link and a ring 2(n−1)/n·D, so the star pays only
where latency dominates (small d, or a collective of many steps), whatever the coordinator's
link. A code's fp64 accumulators double the ring's bytes, and a collective worker's fp64 fold,
step and check can cost what the star's coordinator spends summing n fp32 messages: with the
work, the star can pay at small n (``gcode bench scale --network`` shows where). On one node the
star's gradients go through shared memory, not links; this model is for multi-node runs.

:func:`fit_link` fits α and β (and the shared host's γ) to measured (bytes, seconds) samples
(least squares, all ≥ 0), for calibration against runs on real or emulated links
(``cluster/netns.sh``; ``benchmarks/network_calibration.py``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from .plane_work import TIMED, PlaneWork

#: bandwidth suffixes (bytes per second: value x 8 / divisor for bits) and latency suffixes
#: (seconds: value / divisor, so that 50us is exactly 50e-6)
_RATE_UNITS = {"gbit": 8e-9, "mbit": 8e-6, "kbit": 8e-3, "gb": 1e-9, "mb": 1e-6, "kb": 1e-3}
_TIME_UNITS = {"ns": 1e9, "us": 1e6, "ms": 1e3, "s": 1.0}
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
    host_beta: float | None = None  # bytes/s the CPUs shared by every node copy (None: each node its own)
    accumulate_bytes: int | None = None  # bytes per value of the collective's accumulator (default bytes)
    workers_per_node: int = 1      # k, workers sharing one node's link (ranks not ordered by node)
    work: PlaneWork = field(default_factory=PlaneWork)  # the planes' fold, step and check (s per parameter)

    def __post_init__(self):
        if isinstance(self.work, dict):
            object.__setattr__(self, "work", PlaneWork(**self.work))
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name == "work":
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"network {f.name} must be a finite number, got {value!r}")
            if value < 0 or (value == 0 and f.name in ("beta", "coord_beta", "params", "bytes", "host_beta",
                                                       "accumulate_bytes", "workers_per_node")):
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

    @property
    def acc_bytes(self) -> int:
        """Bytes per value of the collective's accumulator (what its allreduce moves)."""
        return self.bytes if self.accumulate_bytes is None else self.accumulate_bytes

    def with_params(self, params: float) -> NetworkModel:
        return replace(self, params=params)

    # ---- per-round costs (seconds); n may be an int or a numpy array
    def _fan(self, n, nbytes: float, alpha: float | None = None, per_link: float = 1):
        """n concurrent messages of ``nbytes`` between the coordinator and the workers,
        ``per_link`` of them over each worker's link."""
        return (self.a_c if alpha is None else alpha) + np.maximum(n * nbytes / self.b_c,
                                                                    per_link * nbytes / self.beta)

    def star_comm(self, n):
        """Parameters out and n coded gradients in, through the coordinator's link. With k workers
        per node the object store sends the parameters once per node (ceil(n/k) copies), and each
        node's link carries its k workers' gradients."""
        k = self.workers_per_node
        nodes = np.ceil(np.asarray(n) / k)
        gradients = self._fan(n, self.message_bytes, per_link=np.minimum(k, n))
        return self._fan(nodes, self.message_bytes) + gradients

    def star_work(self, n):
        """The star coordinator's work per round: n messages summed, one step (0 unless modelled)."""
        return self.work.coordinator_s(np.asarray(n), self.params, self.bytes)

    def star_round(self, n):
        """A star round beside compute: its transfers and the coordinator's work."""
        return self.star_comm(n) + self.star_work(n)

    def control_round(self, n):
        """The collective plane's round trip: n done reports in, n coefficient messages out, and
        the coordinator's n calls (``work.call_s`` each)."""
        return 2 * self._fan(n, self.control_bytes, self.a_ctl) + self.work.calls_s(np.asarray(n))

    def allreduce(self, n):
        """A ring allreduce of the accumulator (d values of ``acc_bytes``) among n workers (0 for
        n = 1), with the shared host's copying where ``host_beta`` is set."""
        steps = 2 * (np.asarray(n) - 1)
        nbytes = self.params * self.acc_bytes
        host = 0.0 if self.host_beta is None else steps * nbytes / self.host_beta
        edges = np.minimum(self.workers_per_node, n)  # k ring edges per node link: ranks not by node
        return steps * self.alpha + edges * steps / n * nbytes / self.beta + host

    def collective_work(self):
        """Each worker's work per decode: fold, replica step, the check's share (0 unless modelled)."""
        return self.work.worker_s(self.params, self.acc_bytes)

    def collective_comm(self, n):
        """The collective plane's transfers in a steady-state round: control and one allreduce."""
        return self.control_round(n) + self.allreduce(n)

    def collective_round(self, n):
        """A steady-state round of the collective plane beside compute: control, one job's
        allreduce, and the workers' work on that decode."""
        return self.collective_comm(n) + self.collective_work()

    def break_even_params(self, n) -> float:
        """The d below which a star round costs less than a steady collective round at n
        workers. Both are affine in d; where the star's slope is the steeper (it moves at least
        2D over a worker's link against the ring's 2(n−1)/n·D, and folds n messages to a
        worker's one) there is one crossing, 0 where the star costs more at every d. Where it is
        not (a collective slowed by its check or a shared host), inf if the star's fixed cost is
        no higher (it pays at every d), else 0."""
        star = [float(self.with_params(d).star_round(n)) for d in (1.0, 2.0)]
        coll = [float(self.with_params(d).collective_round(n)) for d in (1.0, 2.0)]
        slope = (star[1] - star[0]) - (coll[1] - coll[0])
        fixed = (coll[0] - star[0]) + slope  # the difference at d = 0
        if slope <= 0:
            return math.inf if fixed >= 0 else 0.0
        return max(0.0, fixed / slope)

    def coordinator_bytes(self, n) -> dict:
        """Bytes through the coordinator's link per round, each plane (both directions)."""
        return {"star": 2 * n * self.message_bytes, "collective": 2 * n * self.control_bytes}

    def run_costs(self, n: int, task_rounds: int, decoded_jobs: int, compute_s: float) -> dict:
        """Each plane's communication and own work over a run, and its runtime with the compute
        added (the star's coordinator works once per round with tasks, the collective's workers
        once per decoded job)."""
        comm = {"star": task_rounds * float(self.star_comm(n)),
                "collective": (task_rounds * float(self.control_round(n))
                               + decoded_jobs * float(self.allreduce(n)))}
        work = {"star": task_rounds * float(self.star_work(n)),
                "collective": decoded_jobs * float(self.collective_work())}
        bytes_ = self.coordinator_bytes(n)
        per_round = max(task_rounds, 1)
        return {plane: {"comm_s": comm[plane], "comm_s_per_round": comm[plane] / per_round,
                        "work_s": work[plane], "work_s_per_round": work[plane] / per_round,
                        "runtime_s": compute_s + comm[plane] + work[plane],
                        "coordinator_bytes_per_round": float(bytes_[plane])}
                for plane in ("star", "collective")}

    def describe(self) -> str:
        coord = "" if self.coord_alpha is None and self.coord_beta is None else \
            f", coordinator alpha={self.a_c:g}s beta={self.b_c:.4g}B/s"
        if self.control_alpha is not None:
            coord += f", control alpha={self.a_ctl:g}s"
        if self.host_beta is not None:
            coord += f", shared host {self.host_beta:.4g}B/s"
        if self.workers_per_node > 1:
            coord += f", {self.workers_per_node} workers per node"
        work = self.work
        if work.modelled:
            coord += (f", work per parameter: fold {work.fold_fp32_s_per_param * 1e9:.3g}/"
                      f"{work.fold_fp64_s_per_param * 1e9:.3g} ns (fp32/fp64), step "
                      f"{work.step_s_per_param * 1e9:.3g} ns{f' ({work.optimizer})' * bool(work.optimizer)}, "
                      f"check {work.check_s_per_param * 1e9:.3g} ns every {work.check_every}, "
                      f"cpu share {work.cpu_share:g}")
        return (f"alpha={self.alpha:g}s beta={self.beta:.4g}B/s{coord}, d={self.params:.4g} x "
                f"{self.bytes} B, control {self.control_bytes} B")

    def as_dict(self) -> dict:
        return {**asdict(self), "coord_alpha": self.a_c, "coord_beta": self.b_c, "control_alpha": self.a_ctl}

    @classmethod
    def parse(cls, text: str) -> NetworkModel:
        """``alpha=50us,beta=10gbit,coord_beta=100gbit,params=1e9,bytes=4`` (every key optional;
        alpha/coord_alpha/control_alpha take us, ms or s; beta/coord_beta/host_beta take gbit,
        mbit, kbit, GB, MB, kB per second, or plain bytes per second), and the work terms of
        :class:`PlaneWork` (``step_s_per_param=2.5ns,fold_fp32_s_per_param=1ns,cpu_share=0.5``;
        the per-parameter costs take ns, us, ms or s)."""
        work_names = {f.name for f in fields(PlaneWork)} - {"optimizer"}
        names = ({f.name for f in fields(cls)} - {"work"}) | work_names
        values: dict = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise ValueError(f"--network: expected KEY=VALUE with KEY among {', '.join(sorted(names))}, "
                                 f"got {item!r}")
            if key in values:
                raise ValueError(f"--network: {key} given twice")
            timed = "alpha" in key or key in TIMED
            units = _TIME_UNITS if timed else _RATE_UNITS if "beta" in key else {}
            values[key] = _number(key, raw, units)
            if key in ("bytes", "control_bytes", "accumulate_bytes", "check_every", "workers_per_node"):
                if values[key] != int(values[key]):
                    raise ValueError(f"--network: {key} must be a whole number of bytes, got {raw!r}")
                values[key] = int(values[key])
        work = {k: values.pop(k) for k in list(values) if k in work_names}
        try:
            return cls(**values, work=PlaneWork(**work))
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


def fit_link(samples, steps=None, host_bytes=None) -> dict:
    """α and β fitted to measured transfers: ``samples`` is (bytes, seconds) pairs, each time
    modelled as ``steps·α + bytes/β`` (``steps`` per sample, default 1; a ring allreduce of D
    bytes among n is 2(n−1) steps of 2(n−1)/n·D bytes per link in all), plus ``host_bytes/γ``
    where ``host_bytes`` is given (the bytes every node sends together, for a shared host's
    copying: 2(n−1)·D for a ring). Non-negative least squares on relative error; returns alpha,
    beta and host_beta (inf where their bytes explain nothing), the fit's relative RMS error and
    the sample count."""
    from scipy.optimize import nnls
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 2 or data.shape[0] < 2:
        raise ValueError("fit_link needs at least two (bytes, seconds) samples")
    if not np.isfinite(data).all() or (data <= 0).any():
        raise ValueError("fit_link: bytes and seconds must be finite and > 0")
    nbytes, seconds = data[:, 0], data[:, 1]
    columns = [np.ones_like(seconds) if steps is None else np.asarray(steps, dtype=np.float64), nbytes]
    if host_bytes is not None:
        columns.append(np.asarray(host_bytes, dtype=np.float64))
    if any(c.shape != seconds.shape for c in columns):
        raise ValueError(f"fit_link: steps or host_bytes do not match the {seconds.size} samples")
    # relative errors weigh small and large transfers alike
    design = np.stack(columns, axis=1)
    coef, _ = nnls(design / seconds[:, None], np.ones_like(seconds))
    rel = float(np.sqrt(np.mean((design @ coef / seconds - 1) ** 2)))
    out = {"alpha": float(coef[0]), "beta": float(1 / coef[1]) if coef[1] > 0 else math.inf,
           "rel_rms": rel, "samples": int(seconds.size)}
    if host_bytes is not None:
        out["host_beta"] = float(1 / coef[2]) if coef[2] > 0 else math.inf
    return out


def network_arg(text: str) -> NetworkModel:
    """argparse ``type=`` for ``--network`` (a one-line error naming the key)."""
    import argparse
    try:
        return NetworkModel.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--network: ")) from None
