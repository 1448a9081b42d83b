"""A job's life on the coordinator: issued (its model's parameters shipped once, with its chunk
ranges), its results stored as they arrive (:mod:`gcode.runtime.loop.intake`), then decoded,
checked and stepped once the scheme says it is decodable, and released.

Invariant: job t is issued only once its model's previous job (t - M) has stepped, so every
job computes on the parameters the uninterrupted sequence of updates gives (M >= T + 1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..data import bounds_of, message_dtype
from ..errors import DivergedError
from ..probe import check_decoded, tolerance
from ..transport.base import PlaneStep
from .health import DirectGradient
from .models import ModelBank
from .stats import RunStats


class JobBook:
    """The jobs in flight: each one's transport handle and message dtype (the checkpoint's
    ``jobs`` section), and the decode and step that end it. ``reducer`` is where results are
    stored and summed (the star plane's Decoder); ``check_decode`` compares every decoded
    gradient with one computed here (``direct``)."""

    def __init__(self, scheme, models: ModelBank, transport, reducer, stats: RunStats,
                 batch_size: int, direct: DirectGradient, check_decode: bool, clock,
                 hint=str):
        self.scheme, self.models, self.transport, self.reducer = scheme, models, transport, reducer
        self.stats, self.batch_size, self.direct, self.check_decode = stats, batch_size, direct, check_decode
        self.clock, self.hint = clock, hint
        self.handles: dict[int, Any] = {}       # job -> the transport's handle of its data
        self.dtypes: dict[int, np.dtype] = {}   # job -> message dtype
        self._bounds: dict[tuple, tuple] = {}   # chunking -> chunk ranges
        #: job -> the trainable parameters no result of it reached (so far): left without a
        #: .grad at its step, as plain torch leaves them
        self.unreached: dict[int, set[int]] = {}
        #: job -> (model, its record) while the plane that steps it has not reported the step
        self.awaiting: dict[int, tuple[int, dict]] = {}

    def in_flight(self):
        """The jobs issued and not yet decoded."""
        return self.handles.keys()

    def params_final(self, t: int) -> bool:
        """Whether job t's model has no decode outstanding: job t-M (its model's previous job)
        is decoded and stepped, or there is none (delayed mode: one model, always)."""
        prev = t - self.models.M
        return self.models.delayed or not self.scheme.job_exists(prev) or self.scheme.is_decoded(prev)

    def issue(self, t: int) -> None:
        """Ship model (t mod M)'s parameters and job t's chunk ranges, once."""
        if not self.params_final(t):
            prev = t - self.models.M
            raise RuntimeError(f"job {t} would start from model {t % self.models.M} before job "
                               f"{prev} updated it (M={self.models.M} must be >= T+1="
                               f"{self.scheme.delay + 1})")
        self.models.check_finite(t)  # a diverged model stops the run here
        self.put(t, self.models.params(self.models.model_of(t)).detach(),
                 message_dtype(self.scheme, self.models.workload.exact_blocks))

    def put(self, t: int, flat, dtype) -> None:
        """Job t's parameters (a numpy array or a tensor on any device, copied by the transport
        before this returns) and chunk ranges."""
        fractions = np.asarray(self.scheme.chunk_fractions_for(t), dtype=np.float64)
        groups = tuple(self.scheme.chunk_groups_for(t))
        key = (fractions.tobytes(), groups)
        if key not in self._bounds:
            self._bounds[key] = bounds_of(fractions, self.batch_size, groups,
                                          self.models.workload.exact_blocks)
        self.dtypes[t] = np.dtype(dtype)
        self.handles[t] = self.transport.put_job(t, flat, self._bounds[key])

    def params(self, t: int) -> np.ndarray:
        """Job t's parameters as shipped (read-only)."""
        return self.transport.job_params(self.handles[t])

    def note_unreached(self, t: int, params) -> None:
        """A result of job t left ``params`` without a gradient: a parameter stays unreached
        while no result of the job reached it."""
        seen = self.unreached.get(t)
        self.unreached[t] = set(params) if seen is None else seen & set(params)

    def dtype_for(self, tasks) -> np.dtype:
        """The message dtype of a call computing ``tasks`` (fp32 when it has none)."""
        if not tasks:
            return np.dtype(np.float32)
        return np.result_type(*(self.dtypes[t.job] for t in tasks))

    def finish(self, t: int) -> dict:
        """Decode job t (recorded decodable), check it, step its model, release its data;
        returns what the round's record says of it."""
        timings = self.stats.timings
        td = self.clock.now()
        grad, loss = self.reducer.decode(t, self.scheme.decode(t),
                                         unreached=sorted(self.unreached.get(t, ())))
        timings.decode += self.clock.now() - td
        m = self.models.model_of(t)
        stepped = grad if isinstance(grad, PlaneStep) else None  # the plane stepped its replicas
        if not (math.isfinite(loss) and (stepped is not None or math.isfinite(float(grad.sum())))):
            raise DivergedError(f"model {m} diverged: job {t}'s decoded "
                                f"{'loss' if not math.isfinite(loss) else 'gradient'} is not "
                                f"finite (lower the learning rate?){self.hint()}")
        out = {"job": t, "model": m, "loss": loss / self.batch_size}
        self.stats.last_loss = self.stats.model_loss[m] = out["loss"]
        if stepped is None:
            tc = self.clock.now()
            if self.check_decode:
                self._check(t, m, grad, self.params(t), out)
            ts = self.clock.now()
            timings.check += ts - tc
            report = self.models.step(m, grad, 1.0 / self.batch_size, f"model {m} at job {t}",
                                      unreached=self.unreached.get(t, ()))
            self._record_step(out, report.lr[0], report.grad_norm, report.clip_factor)
            timings.step += self.clock.now() - ts
        elif stepped.pending:  # the plane steps with its next call: its report completes out
            self.awaiting[t] = (m, out)
        else:
            self._plane_stepped(t, m, stepped, out)
        self.unreached.pop(t, None)
        self.stats.updates[m] += 1
        self.dtypes.pop(t, None)
        handle = self.handles.pop(t, None)
        if handle is not None:
            self.transport.release_job(handle)
        self.stats.decoded += 1
        return out

    @staticmethod
    def _record_step(out: dict, lr, norm, clip: float) -> None:
        if norm is not None:  # None: a repeated decode whose step's report was lost with rank 0
            out.update(lr=lr, grad_norm=norm)
            if clip < 1.0:
                out["clip_factor"] = clip

    def _plane_stepped(self, t: int, m: int, step: PlaneStep, out: dict) -> None:
        """Job t's step as the plane reported it, into its record ``out`` (checked first)."""
        tc = self.clock.now()
        if self.check_decode:
            self._check(t, m, step.decoded, step.params, out)
        self.stats.timings.check += self.clock.now() - tc
        self._record_step(out, step.lr, step.grad_norm, step.clip_factor)

    def collect(self) -> None:
        """The plane's reports of pending steps that came in, into their jobs' records."""
        for t in list(self.awaiting):
            step = self.reducer.step_of(t)
            if step is not None:
                m, out = self.awaiting.pop(t)
                self._plane_stepped(t, m, step, out)

    def awaits(self, jobs_done: list[dict]) -> bool:
        """Whether a record of these decoded jobs still awaits a step's report."""
        return any(j["job"] in self.awaiting for j in jobs_done)

    def _check(self, t: int, m: int, decoded, params, out: dict) -> None:
        """``check_decode``: job t's ``decoded`` gradient (Σ a·m, unscaled) against the one
        computed here from its ``params``; a coded scheme's miss stops the run. On the collective
        plane every rank keeps the sums of the last two jobs it stepped, and a decode repeated
        after a fault is sent by a surviving rank: unchecked only when a fault lost the reports
        of more than two jobs that every replica had already stepped."""
        import torch
        if decoded is None or params is None:
            return
        if not isinstance(decoded, torch.Tensor):  # an array from a worker (read-only): a copy
            decoded = torch.from_numpy(np.array(decoded))
        decoded = decoded.cpu()
        direct = self.direct(t, params)
        err = float(torch.linalg.vector_norm(decoded.to(direct.dtype) - direct)
                    / max(float(torch.linalg.vector_norm(direct)), 1e-300))
        worst = self.stats.max_rel_error
        self.stats.max_rel_error = err if worst is None else max(worst, err)
        out["rel_error"] = err
        check_decoded(err, t, self.models.models[m].module, self.scheme.name,  # a miss stops
                      tolerance(self.models.workload.precision))

    # ---- checkpoint ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Each job in flight: its message dtype, parameter snapshot and the parameters its
        stored results did not reach."""
        return {int(t): {"dtype": np.dtype(self.dtypes[t]).name, "params": self.params(t),
                         **({"unreached": sorted(self.unreached[t])} if t in self.unreached else {})}
                for t in sorted(self.handles)}

    def load_state_dict(self, jobs: dict) -> None:
        """Ship a checkpoint's jobs in flight again (their snapshots, not the models')."""
        for t, job in jobs.items():
            self.put(int(t), np.asarray(job["params"], dtype=np.float32), np.dtype(job["dtype"]))
            if "unreached" in job:  # absent from checkpoints written before it was kept
                self.unreached[int(t)] = {int(i) for i in job["unreached"]}
