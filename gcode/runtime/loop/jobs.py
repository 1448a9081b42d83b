"""The coordinator's job lifecycle: issue a job's parameters, decode it, step its model, and
the diagnostics around it (direct gradients for check_decode, held-out evaluation).

A mixin of :class:`gcode.runtime.loop.coordinator.Coordinator`: it reads and writes the
coordinator's state (models, optimizers, decoder, scheme, counters) and holds none itself.
"""

from __future__ import annotations

import math

import numpy as np

from ..data import bounds_of, job_indices
from ..errors import DivergedError
from ..probe import check_decoded
from .health import check_params


class JobLifecycle:
    def _params_final(self, t: int) -> bool:
        """Whether job t's model has no decode outstanding: job t-M (its model's previous job)
        is decoded and stepped, or there is none (delayed mode: one model, always)."""
        prev = t - self.M
        return self.delayed or not self.scheme.job_exists(prev) or self.scheme.is_decoded(prev)

    def _issue(self, t: int) -> None:
        """Put model (t mod M)'s parameters and job t's chunk ranges in the store, once."""
        if not self._params_final(t):
            prev = t - self.M
            raise RuntimeError(f"job {t} would start from model {t % self.M} before job {prev} "
                               f"updated it (M={self.M} must be >= T+1={self.T + 1})")
        check_params(self, t)  # a diverged model stops the run here (gcode.runtime.loop.health)
        model = self.models[self.model_of(t)]
        self.put_job(t, model.params.detach(), self.scheme.message_dtype)

    def put_job(self, t: int, flat, dtype) -> None:
        """Job t's parameters (a numpy array or a tensor on any device) and chunk ranges, copied
        once by the transport (``flat`` may be the live model's: it is copied before this
        returns)."""
        fractions = np.asarray(self.scheme.chunk_fractions_for(t), dtype=np.float64)
        groups = tuple(self.scheme.chunk_groups_for(t))
        key = (fractions.tobytes(), groups)
        if key not in self._bounds_cache:
            self._bounds_cache[key] = bounds_of(fractions, self.cfg.train.batch_size, groups)
        self.job_dtype[t] = np.dtype(dtype)
        self.jobs_ctx[t] = self.transport.put_job(t, flat, self._bounds_cache[key])

    def job_params(self, t: int) -> np.ndarray:
        """Job t's parameter snapshot (a read-only view of the transport's copy)."""
        return self.transport.job_params(self.jobs_ctx[t])

    def _finish_job(self, t: int) -> dict:
        """Decode job t (already recorded decodable), check it, step its model."""
        import torch

        from gcode.train.optim import step
        td = self.clock.now()
        decoding = self.scheme.decode(t)
        grad, loss = self.decoder.decode(t, decoding)
        self.timings.decode += self.clock.now() - td
        m = self.model_of(t)
        tr = self.cfg.train
        if not (math.isfinite(loss) and math.isfinite(float(grad.sum()))):
            raise DivergedError(f"model {m} diverged: job {t}'s decoded "
                                f"{'loss' if not math.isfinite(loss) else 'gradient'} is not "
                                f"finite (lower the learning rate?){self._checkpoint_hint()}")
        out = {"job": t, "model": m, "loss": loss / tr.batch_size}
        self.last_loss = self.model_loss[m] = out["loss"]
        tc = self.clock.now()
        if tr.check_decode:
            direct = self._direct_gradient(t)
            err = float(torch.linalg.vector_norm(grad.cpu() - direct)
                        / max(float(torch.linalg.vector_norm(direct)), 1e-300))
            self.max_rel_error = err if self.max_rel_error is None else max(self.max_rel_error, err)
            out["rel_error"] = err
            check_decoded(err, t, self.models[m].module, self.scheme.name)  # a coded miss stops
        self.timings.check += self.clock.now() - tc
        ts = self.clock.now()
        self.models[m].set_gradient(grad, 1.0 / tr.batch_size)
        step(self.optimizers[m], self.spec.workload.optimizer_fn, f"model {m} at job {t}")
        self.updates[m] += 1
        self.timings.step += self.clock.now() - ts
        self.job_dtype.pop(t, None)
        handle = self.jobs_ctx.pop(t, None)
        if handle is not None:
            self.transport.release_job(handle)
        self.decoded += 1
        return out

    def _direct_gradient(self, t: int):
        """Job t's full gradient computed here in one pass (check_decode: reads the batch on the
        coordinator, which a normal run never does)."""
        import torch

        from gcode.train.compute import TaskComputer
        if self._local is None:
            self._local = TaskComputer(self.spec.workload, "cpu", self.spec.buffers)
        tr = self.cfg.train
        self._local.load(t, self.job_params(t))
        idx = job_indices(tr.seed, t, tr.batch_size, self.spec.num_samples)
        direct = torch.empty(self.spec.num_params, dtype=torch.float64)
        self._local.coded_gradient([idx], [1.0], direct)
        return direct

    def _evaluate(self, r: int) -> list[dict]:
        """Held-out loss (and accuracy) of every model, every ``train.eval_every`` rounds."""
        from gcode.train.compute import evaluate
        every = self.cfg.train.eval_every
        if self.eval_dataset is None or not every or (r + 1) % every:
            return []
        rows = [{"round": r, "model": m, "updates": self.updates[m],
                 **evaluate(model.module, self.spec.workload, self.eval_dataset, model.device)}
                for m, model in enumerate(self.models)]
        self.evals += rows
        return rows

    def final_evaluation(self) -> list[dict] | None:
        """Every model's held-out metrics at the end of the run (None without an eval set)."""
        from gcode.train.compute import evaluate
        if self.eval_dataset is None:
            return None
        return [{"model": m, "updates": self.updates[m],
                 **evaluate(model.module, self.spec.workload, self.eval_dataset, model.device)}
                for m, model in enumerate(self.models)]

    def _checkpoint_hint(self) -> str:
        saved = self.checkpointer.written if self.checkpointer is not None else []
        if not saved:
            return ""
        from ...config import how_to_set
        return (f"; the last checkpoint is {saved[-1]} "
                f"({how_to_set('checkpoint.resume', str(self.checkpointer.root))} continues from it)")

