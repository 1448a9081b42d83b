"""The exactness probe: before a coded run trains, one job's coded tasks, computed by the workers
as they compute every task, are decoded and compared with that job's gradient computed directly.
A model or loss that couples the samples of a batch stops the run here, with its likely cause
and the remedy, instead of training silently wrong.

Coding is exact only when a batch's loss is a sum of per-sample losses, each computed from its
own sample alone and the same on every replica. BatchNorm (batch statistics), an in-batch
contrastive loss (InfoNCE) or dropout (each replica draws another mask, which a cyclic decode
amplifies) break that: their decoded gradients miss the full-batch gradient by 18-56% (issue 27).

What the probe computes, and what it costs (:class:`ProbePlan`): a batch of
P = min(B, max(16, 2 / smallest chunk fraction)) samples (at least two per chunk) drawn as a
job's batch is, but for a job id the run never issues; the scheme's job 0 is played through
a straggler set with as many round-0 stragglers as the scheme allows (every later round on time),
and each worker its decode reads computes its tasks on those P samples, in one call per round of
the scheme (each at most one round's tasks, so it fits the result buffers a run reserves). Two
other workers compute the P samples' gradient directly, one each. In all that is about
load·n·P + 2P samples of forward and backward, on the workers, in parallel, in (T + 2) calls'
time before round 0; the coordinator reads no data. ``uncoded`` runs (whose batch is the
workers' chunks, as in torch DDP) and approximate schemes are not probed.

Verdict: ``rel_error`` = ‖decoded − direct‖ / ‖direct‖. Above :data:`PROBE_TOLERANCE` (a coded run
promises 1e-6; a sound model's decode is off by fp32 rounding, about 1e-7) the run stops with a
WorkloadError naming the cause: when the two direct gradients differ as well (``repeat_error``),
the forward pass is random (dropout, augmentation); otherwise the samples are coupled (BatchNorm,
a loss over the batch). ``check_decode`` applies the same tolerance to every decoded job of a
coded run (:func:`check_decoded`).
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ..train.workload import WorkloadError
from .data import bounds_of
from .transport.base import CodeFailure
from .wire import Call, Result, WireTask

#: the most a coded decode may miss its job's direct gradient by (relative) before a run stops
PROBE_TOLERANCE = 1e-5
#: the same under ``train.precision="bf16"``: autocast rounds each worker's sum over its chunk's
#: samples (a weight gradient's matmul output) to bf16, 8 bits, so a decode of chunk sums misses
#: the whole batch's gradient by up to about 2^-8 (measured 2e-3 to 4e-3); a coupled model still
#: misses by 18-56%
BF16_TOLERANCE = 3e-2


def tolerance(precision: str) -> float:
    """The probe's and ``check_decode``'s tolerance for the workers' precision."""
    return BF16_TOLERANCE if precision == "bf16" else PROBE_TOLERANCE
#: the fewest samples a probe batch has (when the job's batch has as many)
MIN_PROBE_BATCH = 16


@dataclass(frozen=True)
class ProbePlan:
    """What the workers compute for the probe. ``calls`` lists, per phase, each worker's tasks
    (one call per worker and phase, phases one after another); ``weights[(phase, worker, slot)]``
    is a task's decode coefficient; ``direct`` names the two (phase, worker, slot) that compute
    the whole probe batch's gradient (the last chunk of ``bounds``)."""

    job: int                   # the job id the probe's tasks carry (never one the run issues)
    batch: int                 # P: samples in the probe batch
    bounds: tuple              # chunk id -> [start, stop) in the probe batch; last: all of it
    calls: tuple               # per phase: {worker: (WireTask, ...)}
    weights: dict
    direct: tuple
    dtype: str                 # the message dtype
    stragglers: int            # round-0 stragglers of the decode played
    samples: int               # forward and backward passes, in samples, of the whole probe


@dataclass
class ProbeResult:
    """The probe's measurement (the run's ``exactness_probe`` metric)."""

    rel_error: float | None = None
    repeat_error: float | None = None
    batch: int = 0
    samples: int = 0
    stragglers: int = 0
    seconds: float = 0.0
    skipped: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def probe_scheme(cfg, scheme):
    """A fresh scheme whose job 0 has the run's coded structure: a copy of ``scheme`` before any
    round, or for ``auto`` (which may start uncoded) a GC code of its ``gc_code``."""
    if cfg.scheme.name != "auto":
        return copy.deepcopy(scheme)
    from gcode.codes import make_scheme
    from gcode.sim.online import OnlineConfig
    n = cfg.cluster.workers
    return make_scheme("gc", n=n, jobs=1, s=min(1, n - 1),
                       gc_code=cfg.scheme.gc_code or OnlineConfig.gc_code)


def replicas_must_match(scheme) -> bool:
    """True when a decode weighs replicas of a chunk with coefficients other than 1 (every code
    but fractional repetition), so two workers' gradients of one chunk must be bit-identical."""
    segments = getattr(scheme, "segments", None)
    schemes = [seg.scheme for seg in segments] if segments is not None else [scheme]
    return any(getattr(getattr(s, "code", None), "kind", "fr") != "fr" for s in schemes)


def plan_probe(scheme, batch_size: int, job: int) -> ProbePlan | None:
    """The probe of a fresh ``scheme`` (it is copied, not driven), on a batch of job id ``job``;
    None for ``uncoded`` (its batch is the workers' chunks, as in torch DDP: nothing to compare
    with), approximate schemes and one worker."""
    if scheme.name == "uncoded" or not getattr(scheme, "exact", True) or scheme.n < 2:
        return None
    decoding, plans, stragglers = _job0_decoding(scheme)
    tasks = [(key, a, _task(plans[key.round], key)) for key, a in decoding]
    fractions = np.asarray(scheme.chunk_fractions_for(0), dtype=np.float64)
    batch = min(batch_size, max(MIN_PROBE_BATCH, math.ceil(2.0 / fractions[fractions > 0].min())))
    bounds = bounds_of(fractions, batch, tuple(scheme.chunk_groups_for(0))) + ((0, batch),)
    rounds = sorted({key.round for key, _, _ in tasks})
    calls = [{} for _ in rounds]
    weights = {}
    for key, a, task in tasks:
        phase = rounds.index(key.round)
        mine = calls[phase].setdefault(key.worker, [])
        weights[(phase, key.worker, len(mine))] = a
        mine.append(WireTask(job, len(mine), task.chunks, task.coefficients))
    busy = {w for phase in calls for w in phase}
    idle = [w for w in range(scheme.n) if w not in busy] + sorted(busy)
    whole = (len(bounds) - 1,)
    direct_phase = {idle[0]: [WireTask(job, 0, whole, (1.0,))],
                    idle[1]: [WireTask(job, 0, whole, (1.0,))]}
    direct = ((len(calls), idle[0], 0), (len(calls), idle[1], 0))
    calls.append(direct_phase)
    samples = sum(b - a for phase in calls for ts in phase.values() for t in ts
                  for a, b in (bounds[c] for c in t.chunks))
    return ProbePlan(job, batch, bounds, tuple({w: tuple(ts) for w, ts in p.items()} for p in calls),
                     weights, direct, np.dtype(scheme.message_dtype).name, stragglers, samples)


def _job0_decoding(scheme):
    """(decoding of job 0, round -> plan, round-0 stragglers) of a copy of ``scheme`` played
    with the most round-0 stragglers it allows (the last workers), or none when that set does
    not decode in time (a checked code may wait on it)."""
    n = scheme.n
    for k in (_most_stragglers(scheme), 0):
        played, plans = copy.deepcopy(scheme), {}
        for r in range(played.decode_deadline(0) + 1):
            plans[r] = played.plan(r)
            arrived = np.ones(n, dtype=bool)
            if r == 0 and k:
                arrived[n - k:] = False
            played.record(r, arrived)
            if played.decodable(0):
                return played.decode(0), plans, k
    raise RuntimeError(f"{scheme.name}: job 0 does not decode with every worker on time")


def _most_stragglers(scheme) -> int:
    fresh = copy.deepcopy(scheme)
    for k in range(scheme.n - 1, 0, -1):
        mask = np.zeros(scheme.n, dtype=bool)
        mask[scheme.n - k:] = True
        if fresh.conforms(0, mask):
            return k
    return 0


def _task(plan, key):
    return next(t for t in plan.tasks(key.worker) if t.slot == key.slot)


def run_probe(plan: ProbePlan, transport, ctx_id: str, params, num_params: int, clock,
              timeout_s: float) -> ProbeResult:
    """Compute ``plan`` on the workers through ``transport`` (a run's, its workers prepared),
    decode it in float64 and measure; no verdict (see :func:`check_probe`)."""
    t0 = clock.now()
    result = ProbeResult(batch=plan.batch, samples=plan.samples, stragglers=plan.stragglers)
    handle = transport.put_job(plan.job, params, plan.bounds)
    decoded, direct = np.zeros(num_params), {}
    itemsize = np.dtype(plan.dtype).itemsize
    try:
        for phase, tasks_of in enumerate(plan.calls):
            calls = {w: Call(ctx=ctx_id, round=0, tasks=tasks, jobs=(plan.job,), dtype=plan.dtype)
                     for w, tasks in tasks_of.items()}
            handles = {w: transport.call(w, call, False, [handle], len(call.tasks) * num_params
                                         * itemsize) for w, call in calls.items()}
            missing = _wait(transport, list(handles.values()), clock, t0 + timeout_s)
            if missing:
                transport.forget(missing)
                result.skipped = f"{len(missing)} worker(s) did not answer in {timeout_s:g} s"
                return result
            for (w, call), (res, err) in zip(calls.items(), transport.fetch(list(handles.values()))):
                if isinstance(err, CodeFailure) and "non-finite" not in err:  # the code raised
                    raise WorkloadError(f"{err.error} (worker {w}, in the startup probe)")
                why = err or Result.problem(res, call, w, num_params)
                if why is not None or res.grads is None:
                    result.skipped = f"worker {w}: {why or 'its result carries no gradient'}"
                    return result
                for slot in range(len(call.tasks)):
                    key = (phase, w, slot)
                    if key in plan.direct:
                        direct[key] = np.array(res.grads[slot], dtype=np.float64)
                    elif key in plan.weights:
                        decoded += plan.weights[key] * res.grads[slot].astype(np.float64)
    finally:
        transport.release_job(handle)
    exact, again = (direct[key] for key in plan.direct)
    scale = max(float(np.linalg.norm(exact)), 1e-300)
    result.rel_error = float(np.linalg.norm(decoded - exact)) / scale
    result.repeat_error = float(np.linalg.norm(again - exact)) / scale
    result.seconds = clock.now() - t0
    return result


def _wait(transport, handles: list, clock, deadline: float) -> list:
    """Wait for every call until ``deadline``; returns those that did not finish."""
    pending = list(handles)
    while pending:
        left = deadline - clock.now()
        if left <= 0:
            return pending
        done = set(map(id, transport.wait(pending, left)))
        pending = [h for h in pending if id(h) not in done]
    return []


def check_probe(result: ProbeResult, module, scheme_name: str,
                limit: float = PROBE_TOLERANCE) -> None:
    """WorkloadError naming the likely cause and the remedy when the probe's decode missed by
    more than ``limit`` (:func:`tolerance` of the run's precision)."""
    if result.skipped is not None:
        warnings.warn(f"exactness probe skipped ({result.skipped}); the run goes on unprobed",
                      stacklevel=2)
        return
    if result.rel_error <= limit:
        return
    random = result.repeat_error > limit
    repeat = (f"; two direct computations of it differ by {result.repeat_error:.1e}" if random
              else "")
    promise = "1e-6" if limit == PROBE_TOLERANCE else "bf16 rounding of each worker's sums"
    raise WorkloadError(
        f"gcode cannot code this model exactly: under scheme {scheme_name!r} a job's decoded "
        f"gradient misses its directly computed gradient by {result.rel_error:.1e} (relative; "
        f"a coded run must stay within {promise}, the startup probe allows {limit:.0e})"
        f"{repeat}; {_cause(module, random)}")


def check_decoded(rel_error: float, job: int, module, scheme_name: str,
                  limit: float = PROBE_TOLERANCE) -> None:
    """``check_decode``: WorkloadError when a coded scheme's decoded job ``job`` misses its direct
    gradient by more than ``limit`` (uncoded runs only record it: their batch is the workers'
    chunks, as in torch DDP)."""
    if scheme_name == "uncoded" or not rel_error > limit:
        return
    raise WorkloadError(
        f"check_decode: job {job}'s decoded gradient misses its directly computed gradient by "
        f"{rel_error:.1e} (relative; the run allows {limit:.0e}), so the run stops; "
        f"{_cause(module, None)}")


def _cause(module, random: bool | None) -> str:
    """The likely cause, named from the model's modules, and its remedy."""
    from torch import nn
    modules = list(module.named_modules())
    norms = [(n, m) for n, m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    drops = [(n, m, m.p) for n, m in modules if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
    drops += [(n, m, m.dropout) for n, m in modules  # MultiheadAttention, RNNs: dropout=p
              if isinstance(getattr(m, "dropout", None), float) and m.dropout > 0]
    uncoded = 'or train with scheme "uncoded"'
    if drops and random is not False:
        name, m, p = drops[0]
        return (f"likely cause: {type(m).__name__} {name or '(the model)'!r} (dropout {p:g}) "
                f"draws another random "
                f"mask on every replica of a chunk; remedy: dropout off (p=0) or seeded per "
                f"sample (a mask drawn from the sample's index), {uncoded}")
    if norms and random is not True:
        name, m = norms[0]
        return (f"likely cause: {type(m).__name__} layer {name or '(the model)'!r} normalizes over "
                f"the batch, so a chunk's gradient depends on the other samples its worker "
                f"computes with; remedy: GroupNorm or LayerNorm instead, {uncoded}")
    if random:
        return (f"likely cause: the forward pass or the data is random (random augmentation in "
                f"dataset_fn or collate_fn, noise drawn in the model or loss_fn); remedy: draw "
                f"it from each sample's index (seeded per sample), {uncoded}")
    return (f"likely cause: loss_fn or the model mixes the samples of a batch (an in-batch "
            f"contrastive loss such as InfoNCE, a batch mean or std, attention across the "
            f"batch); remedy: per-sample losses, each computed from its own sample alone, "
            f"{uncoded}")


class StartupProbe:
    """A run's probe: planned from the fresh scheme (:meth:`of`, before a checkpoint replays
    it), run once its workers are prepared (:meth:`run`). ``deterministic``: the run's GPU
    workers must compute replicas of a chunk bit-identically (:func:`replicas_must_match`)."""

    def __init__(self, plan: ProbePlan | None, deterministic: bool, scheme_name: str,
                 timeout_s: float, limit: float = PROBE_TOLERANCE):
        self.plan, self.deterministic = plan, deterministic
        self.scheme_name, self.timeout_s, self.limit = scheme_name, timeout_s, limit

    @classmethod
    def of(cls, cfg, scheme) -> StartupProbe:
        fresh = probe_scheme(cfg, scheme)
        return cls(plan_probe(fresh, cfg.train.batch_size, job=cfg.scheme.jobs),
                   replicas_must_match(fresh), cfg.scheme.name, cfg.cluster.startup_timeout_s,
                   tolerance(cfg.train.precision))

    def run(self, transport, ctx_id: str, model, clock) -> ProbeResult | None:
        """Probe with ``model`` (a FlatModel: its parameters, and its module for the cause);
        WorkloadError when the decode misses. None when the scheme has nothing to probe."""
        if self.plan is None:
            return None
        result = run_probe(self.plan, transport, ctx_id, model.params.detach(), model.numel,
                           clock, self.timeout_s)
        check_probe(result, model.module, self.scheme_name, self.limit)
        return result
