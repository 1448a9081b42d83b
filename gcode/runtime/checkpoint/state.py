"""Checkpoint and resume of a live run: capture and restore of the coordinator's full state.

The files (format, atomic writes, verification) are :mod:`gcode.runtime.checkpoint.files`,
whose names this module re-exports; one run per directory is
:mod:`gcode.runtime.checkpoint.lock`, and the checks of a checkpoint's content
:mod:`gcode.runtime.checkpoint.checks`.

Resume semantics
----------------
* A checkpoint is taken at a round boundary: before round r is planned, after the late results of
  earlier rounds that had already arrived were absorbed (every ``checkpoint.every`` rounds, and
  when a stop request ends the run). Resuming runs round r next from exactly the state the
  uninterrupted run had there: parameters and buffers of all M models, their optimizers' state,
  the scheme (its replayed event log: history, pending jobs, received results, switches), the
  online tuner (auto: base-time history, current scheme/μ, decisions, load slope), the decoder's
  stored results and fp64 accumulators, the pending jobs' parameter snapshots, the counters, the
  injected-delay table and the torch/numpy/python RNG states.
* Straggler calls still in flight at the checkpoint cannot outlive the process: the resumed run
  treats them as never arriving (``late_results_dropped``). Their rounds already recorded them as
  stragglers, and every scheme decodes without late results, so decoding is unaffected.
* Live timing decides only which received results a decode uses. With FR codes (and uncoded)
  every choice sums the same fp32 vectors in fp64, so a resumed run ends with parameters
  bit-identical to the uninterrupted run's. With cyclic codes the decode coefficients depend on
  the straggler set, so any two live runs, resumed or not, agree to the decode precision (about
  1e-7 relative per gradient). The auto scheme's later switches depend on the times it observes
  after the resume: when it switches as the uninterrupted run did the parameters are
  bit-identical, otherwise they agree to that precision (other chunkings round differently).
* The resuming run's config must equal the checkpoint's, except the fields in
  :data:`SAFE_OVERRIDES` (logs, checkpoint settings, cluster address/placement/CPUs/timeouts/
  restarts, GPU placement, decode threads, fault injection, check_decode, eval_every); any other
  difference is a ConfigError naming the field.
* A run can be extended: a resume with more ``scheme.jobs`` (``RunConfig(jobs=...)``, ``gcode
  train --resume DIR --jobs N``) continues as if the run had been given that many jobs from the
  start (bit-exact where resuming is). Every run checkpoints at round ``jobs`` (where the rounds
  that only finish earlier jobs begin, T of them) and at its end; an extension of a finished run
  with T > 0 continues from the round-``jobs`` checkpoint (:func:`continue_from`), since a longer
  run's rounds from there on issue new jobs. The schedule a ``scheduler_fn`` builds must not
  depend on the number of jobs for the extension to equal the longer run.
* A resumed run writes its checkpoints into the folder it resumed from; checkpoints of later
  rounds there (the abandoned continuation) are deleted when it writes its first one. A fresh run
  refuses a ``checkpoint.dir`` that already holds checkpoints.
* ``log.jsonl`` keeps the records of the rounds before the resume round and continues; a
  telemetry run log at the same prefix is moved to ``PREFIX.before-rNNNNNNNN.{pb,jsonl}`` and a new
  one starts at the resume round.
* Worker actors hold no run state (every call carries it), so a resumed run may use a different
  cluster or pool.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...config import ConfigError, TrainConfig, canonical, how_to_set, resume_safe_keys
from .files import (  # noqa: F401 - re-exported: the checkpoint API lives here
    ARRAYS_FILE,
    FORMAT,
    MANIFEST_FILE,
    STATE_FILE,
    VERSION,
    Checkpoint,
    CheckpointError,
    canonical_json,
    checkpoints_in,
    probe_writable,
    read_checkpoint,
    resolve,
    sha256_file,
    write_checkpoint,
    write_npz,
)

#: config fields that may differ between a checkpoint and the run resuming it: where and how the
#: run executes, logs and checkpoints, fault injection and diagnostics (the settings declared
#: ``resume_safe``). They never change what is computed. Every other field (scheme, policy,
#: workers, model, data, optimizer, seed, injection, streaming decode) must be equal.
SAFE_OVERRIDES = ("faults", *resume_safe_keys())


# ---- configs --------------------------------------------------------------------------------
def _flat(d: dict) -> dict:
    out = {}
    for section, fields in d.items():
        if isinstance(fields, dict):
            for k, v in fields.items():
                out[f"{section}.{k}"] = v
        else:
            out[section] = fields
    return out


def _plain(value: Any) -> Any:
    """Tuples as lists (a config dict from a file and from a checkpoint compare equal)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def check_resume_config(saved: dict, cfg: TrainConfig) -> None:
    """ConfigError naming the first field (and listing the others) where ``cfg`` differs from the
    checkpoint's config, ignoring :data:`SAFE_OVERRIDES`. A field the checkpoint lacks was added
    after it was written, so its run had that field's default (which keeps the older behaviour)."""
    b = _flat(_plain(cfg.to_dict()))
    a = {**_flat(_plain(type(cfg)().to_dict())), **_flat(_plain(canonical(saved)[0]))}
    if isinstance(a.get("scheme.jobs"), int) and b["scheme.jobs"] < a["scheme.jobs"]:
        raise ConfigError("scheme.jobs", f"is {b['scheme.jobs']}, fewer than the checkpointed "
                                         f"run's {a['scheme.jobs']}: a run can be extended with "
                                         f"more jobs, not shortened")
    a["scheme.jobs"] = b["scheme.jobs"]  # more jobs extend the run
    differ = [k for k in b if not k.startswith(SAFE_OVERRIDES) and k != "faults"
              and a.get(k) != b.get(k)]
    differ += [k for k in a if k not in b and not k.startswith(SAFE_OVERRIDES)]
    if differ:
        k = differ[0]
        more = f"; also differ: {', '.join(differ[1:])}" if differ[1:] else ""
        raise ConfigError(k, f"differs from the checkpoint's config (checkpoint: {a.get(k)!r}, "
                             f"this run: {b.get(k)!r}){more}. A resumed run must compute the "
                             f"same thing: resume with the checkpoint's own config ("
                             f"{how_to_set('checkpoint.resume', placeholder='DIR')}, changing only "
                             f"log, checkpoint, cluster placement/"
                             f"timeouts, GPUs, faults, check_decode or eval_every), or start a new run "
                             f"in a fresh checkpoint.dir")


def resume_config(path: str | os.PathLike) -> TrainConfig:
    """The config a checkpoint was written with, set to resume from it (``checkpoint.resume``)."""
    from ...config import from_dict
    ck = read_checkpoint(path)
    data = json.loads(json.dumps(_plain(ck.config)))
    section = data.setdefault("checkpoint", {})
    section["resume"] = str(path)
    if section.get("dir") is not None:  # keep checkpointing where the run's checkpoints are
        section["dir"] = str(ck.path.parent)
    return from_dict(data, paths=False)  # its log paths are checked once flags have changed them


# ---- capture and restore of a coordinator ----------------------------------------------------
def _rng_state() -> dict:
    import random

    import torch
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def _restore_rng(rng: dict) -> None:
    import random

    import torch
    torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss),
                         float(cached)))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(int(v) for v in internal), gauss))


def capture(coord, r: int, runtime_s: float) -> dict:
    """The full state of ``coord`` at the boundary before round ``r`` (late results of earlier
    rounds already absorbed), as a tree for :func:`write_checkpoint`: its parts' state dicts
    (:meth:`gcode.runtime.loop.coordinator.Coordinator.state_dict`) and the RNG states."""
    coord.models.check_all_finite(r)  # a diverged model is never checkpointed
    return {"format": FORMAT, "version": VERSION, "round": int(r), "config": coord.config,
            **coord.state_dict(r, runtime_s), "rng": _rng_state()}


def saved_jobs(ck: Checkpoint) -> int:
    """The jobs of the run ``ck`` checkpointed."""
    return int(ck.config["scheme"]["jobs"])


def continue_from(ck: Checkpoint, cfg: TrainConfig) -> Checkpoint:
    """The checkpoint a run under ``cfg`` continues from: ``ck``; or, when ``cfg`` extends the
    run with more jobs and ``ck`` is past its round ``jobs`` (the rounds after it issue no job,
    which a longer run's do), the run's checkpoint at round ``jobs``, always written."""
    old = saved_jobs(ck)
    if cfg.scheme.jobs == old or ck.round <= old:
        return ck
    path = ck.path.parent / f"round-{old:08d}"
    if not path.is_dir():
        raise ConfigError("scheme.jobs", f"extending the run checkpointed in {ck.path.parent} to "
                                         f"{cfg.scheme.jobs} jobs continues from its checkpoint "
                                         f"at round {old} (its last {ck.round - old} rounds "
                                         f"issued no job), which is gone: it was written, and "
                                         f"deleted by checkpoint.keep; keep at least 2")
    return read_checkpoint(path)


def restore_scheme_and_policy(ck: Checkpoint, scheme, policy):
    """(scheme, policy) in the checkpoint's state; ``scheme``/``policy`` are the freshly built ones
    (the online tuner is rebuilt from its config and given its saved history and choice); a
    ``scheme`` of more jobs than the checkpoint's extends its run (:func:`continue_from`)."""
    from ...codes.state import restore_scheme
    try:
        restored = restore_scheme(ck.tree["scheme"], jobs=scheme.jobs)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {ck.path}: {exc}") from None
    if restored.n != scheme.n or restored.name != scheme.name:
        raise CheckpointError(f"checkpoint {ck.path}: scheme {restored.name} n={restored.n} does "
                              f"not match the config's {scheme.name} n={scheme.n}")
    tuner = ck.tree.get("tuner")
    if tuner is not None:
        if getattr(policy, "name", None) != "auto":
            raise CheckpointError(f"checkpoint {ck.path}: holds tuner state but the run's policy "
                                  f"is {getattr(policy, 'name', policy)!r}")
        policy.restore(tuner, restored)
    return restored, policy


def restore_buffers(ck: Checkpoint, models) -> None:
    """The checkpoint's buffers into freshly built ``models`` (FlatModels), before the run's
    WorkSpec sends them to the workers; a checkpoint that does not fit is left for
    :func:`restore_coordinator` to refuse with its reason."""
    import torch
    saved = ck.tree.get("models")
    if not isinstance(saved, list) or len(saved) != len(models):
        return
    for model, entry in zip(models, saved):
        state = entry.get("params") if isinstance(entry, dict) else None
        mine = dict(model.module.named_buffers())
        if not isinstance(state, dict):
            return
        for name, buf in mine.items():
            value = state.get(name)
            if value is not None and tuple(np.shape(value)) == tuple(buf.shape):
                with torch.no_grad():
                    buf.copy_(torch.as_tensor(np.asarray(value)))


def restore_coordinator(coord, ck: Checkpoint) -> None:
    """Put a freshly built coordinator (same config, restored scheme) into the checkpoint's state:
    models, optimizers, counters, decoder, pending jobs (shipped again), delay table, RNG
    states. The next ``coord.run()`` starts at the checkpoint's round."""
    from .checks import check_against
    problem = check_against(coord.models.models, coord.models.optimizers, coord.num_params,
                            ck.tree)
    if problem is not None:
        raise CheckpointError(f"checkpoint {ck.path} does not fit this run: {problem}")
    try:
        coord.load_state_dict(ck.tree, str(ck.path))
        _restore_rng(ck.tree["rng"])
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {ck.path}: inconsistent content: "
                              f"{type(exc).__name__}: {exc}") from None


class Checkpointer:
    """Writes the coordinator's checkpoints into ``root`` every ``every`` rounds, at the rounds
    in ``marks`` (the run's jobs: where an extended run continues), at the end and on stop;
    ``on_save(path)`` hears of each."""

    def __init__(self, root: str | os.PathLike, every: int, keep: int = 2, marks=(),
                 on_save=None):
        self.root, self.every, self.keep = Path(root), int(every), int(keep)
        self.marks = frozenset(int(r) for r in marks)
        self.on_save = on_save  # called with each written folder's path
        self.written: list[str] = []
        self.seconds = 0.0

    def due(self, r: int, start_round: int) -> bool:
        return r > start_round and (r % self.every == 0 or r in self.marks)

    def save(self, coord, r: int, runtime_s: float) -> Path:
        t0 = time.perf_counter()
        path = write_checkpoint(self.root, r, capture(coord, r, runtime_s), keep=self.keep)
        self.written.append(str(path))
        self.seconds += time.perf_counter() - t0
        if self.on_save is not None:
            self.on_save(str(path))
        return path


__all__ = ["ARRAYS_FILE", "FORMAT", "MANIFEST_FILE", "SAFE_OVERRIDES", "STATE_FILE", "VERSION",
           "Checkpoint", "CheckpointError", "Checkpointer", "capture", "check_resume_config",
           "checkpoints_in", "continue_from", "probe_writable", "read_checkpoint", "resolve",
           "restore_buffers", "restore_coordinator", "restore_scheme_and_policy", "resume_config",
           "write_checkpoint"]
