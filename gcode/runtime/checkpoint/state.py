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
  restarts, GPU placement, decode threads, fault injection, check_decode, eval_every); any other difference is a ConfigError
  naming the field. Extending ``scheme.jobs`` is not supported.
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
def _model_state(model, optimizer) -> dict:
    sd = optimizer.state_dict()
    return {"params": {k: v.cpu() for k, v in model.module.state_dict().items()},
            "optimizer": {"state": dict(sd["state"]), "param_groups": sd["param_groups"]}}


def _tuner_state(policy) -> dict | None:
    return policy.state() if getattr(policy, "name", None) == "auto" else None


def _decoder_state(dec) -> dict:
    dec.flush(min_pending=1)  # the state is then accumulators and stored results only

    def host(acc):
        return None if acc is None else np.asarray(dec.math.tensor(acc).cpu().numpy())
    return {"streaming": dec.streaming, "streamed": dec.streamed, "fallbacks": dec.fallbacks,
            "results": [[tuple(key), dec.sig[key], dec.host(arr), dec.losses[key]]
                        for key, arr in dec.results.items()],
            "jobs": [[t, {"acc": host(job.acc), "loss": job.loss,
                          "folded": [[sig, tuple(k)] for sig, k in job.folded.items()],
                          "keys": sorted(tuple(k) for k in job.keys)}]
                     for t, job in dec.jobs.items()]}


def capture(coord, r: int, runtime_s: float) -> dict:
    """The full state of ``coord`` at the boundary before round ``r`` (late results of earlier
    rounds already absorbed), as a tree for :func:`write_checkpoint`."""
    import random

    import torch

    from ...codes.state import scheme_state
    from ..loop.health import check_all_params
    check_all_params(coord, r)  # a diverged model is never checkpointed
    cfg = coord.cfg.to_dict()
    cfg["checkpoint"]["resume"] = None
    return {
        "format": FORMAT, "version": VERSION, "round": int(r),
        "config": cfg,
        "run": {"run_id": coord.run_id, "runtime_s": float(runtime_s), "sessions": coord.sessions,
                "n": coord.n, "models": coord.M, "num_params": coord.spec.num_params,
                "scheme": coord.scheme.name},
        "scheme": scheme_state(coord.scheme),
        "tuner": _tuner_state(coord.policy),
        "coordinator": {
            "waits": coord.waits, "decoded": coord.decoded, "late_used": coord.late_used,
            "late_dropped": coord.late_dropped, "retries": coord.retries,
            "pipelined": coord.pipelined, "stragglers_total": coord.stragglers_total,
            "max_rel_error": coord.max_rel_error,
            "last_loss": coord.last_loss, "updates": list(coord.updates),
            "model_loss": {str(m): v for m, v in coord.model_loss.items()},
            "evals": list(coord.evals),
            "failures": list(coord.failures), "restarts": dict(coord.restarts),
            "compute_s": list(coord.compute_s), "response_s": list(coord.response_s),
            "slope_samples": list(coord.slope_samples), "durations": list(coord.durations),
            "timings": dict(coord.timings.__dict__),
        },
        # straggler calls still in flight: their results cannot outlive this process, so a
        # resumed run treats them as never arriving (their rounds already counted them as
        # stragglers, which every scheme decodes without)
        "late": [[rr, w, [t.job for t in tasks]] for _ref, rr, w, tasks in coord.late],
        "jobs": {int(t): {"dtype": np.dtype(coord.job_dtype[t]).name, "params": coord.job_params(t)}
                 for t in sorted(coord.jobs_ctx)},
        "decoder": _decoder_state(coord.decoder),
        "delays": {"table": coord.delays.table, "next_round": int(r)},
        "models": [_model_state(m, o) for m, o in zip(coord.models, coord.optimizers)],
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                "python": random.getstate()},
    }


def restore_scheme_and_policy(ck: Checkpoint, scheme, policy):
    """(scheme, policy) in the checkpoint's state; ``scheme``/``policy`` are the freshly built ones
    (the online tuner is rebuilt from its config and given its saved history and choice)."""
    from ...codes.state import restore_scheme
    try:
        restored = restore_scheme(ck.tree["scheme"])
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
    models, optimizers, counters, decoder, pending jobs (re-put to the object store), delay table,
    RNG states. The next ``coord.run()`` starts at the checkpoint's round."""
    from .checks import check_against
    problem = check_against(coord, ck)
    if problem is not None:
        raise CheckpointError(f"checkpoint {ck.path} does not fit this run: {problem}")
    try:
        _restore(coord, ck)
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {ck.path}: inconsistent content: "
                              f"{type(exc).__name__}: {exc}") from None


def _restore(coord, ck: Checkpoint) -> None:
    import random

    import torch

    from ...codes import ResultKey
    from ..loop.decode import _Job
    tree = ck.tree
    run = tree["run"]
    if (run["n"], run["models"], run["num_params"]) != (coord.n, coord.M, coord.spec.num_params):
        raise CheckpointError(f"checkpoint {ck.path}: n={run['n']}, models={run['models']}, "
                              f"num_params={run['num_params']} do not match this run's n={coord.n}, "
                              f"models={coord.M}, num_params={coord.spec.num_params}")
    # models and optimizers
    if len(tree["models"]) != coord.M:
        raise CheckpointError(f"checkpoint {ck.path}: {len(tree['models'])} models, expected {coord.M}")
    for model, opt, saved in zip(coord.models, coord.optimizers, tree["models"]):
        model.module.load_state_dict({k: torch.tensor(v) for k, v in saved["params"].items()},
                                     strict=True)
        state = {int(k): {kk: torch.tensor(vv) if isinstance(vv, np.ndarray) else vv
                          for kk, vv in st.items()} for k, st in saved["optimizer"]["state"].items()}
        opt.load_state_dict({"state": state, "param_groups": saved["optimizer"]["param_groups"]})
    # counters
    c = tree["coordinator"]
    for key in ("waits", "decoded", "late_used", "late_dropped", "retries", "stragglers_total",
                "max_rel_error", "last_loss"):
        setattr(coord, key, c[key])
    coord.pipelined = int(c.get("pipelined", 0))  # absent from checkpoints before pipelining
    coord.updates = [int(u) for u in c["updates"]]
    coord.model_loss = {int(m): float(v) for m, v in c["model_loss"].items()}
    coord.evals = list(c["evals"])
    coord.failures = list(c["failures"])
    coord.restarts = {int(k): int(v) for k, v in c["restarts"].items()}
    for key in ("compute_s", "response_s", "slope_samples", "durations"):
        setattr(coord, key, [float(v) for v in c[key]])
    for key, value in c["timings"].items():
        if hasattr(coord.timings, key):
            setattr(coord.timings, key, float(value))
    coord.late_dropped += len(tree["late"])
    # decoder
    d = tree["decoder"]
    dec = coord.decoder
    dec.streamed, dec.fallbacks = int(d["streamed"]), int(d["fallbacks"])
    for key, sig, arr, loss in d["results"]:
        arr = np.asarray(arr)
        if arr.shape != (dec.d,):
            raise CheckpointError(f"checkpoint {ck.path}: a stored result has shape {arr.shape}, "
                                  f"expected ({dec.d},)")
        k = ResultKey(*key)
        dec.results[k] = arr
        dec.losses[k] = float(loss)
        dec.sig[k] = sig
    for t, job in d["jobs"]:
        acc = None
        if job["acc"] is not None:
            acc = dec.math.zeros()
            dec.math.fold(acc, [np.asarray(job["acc"], dtype=np.float64)], [1.0])
        dec.jobs[int(t)] = _Job(acc=acc, loss=float(job["loss"]),
                                folded={sig: ResultKey(*k) for sig, k in job["folded"]},
                                keys={ResultKey(*k) for k in job["keys"]})
    # pending jobs: their parameter snapshots go back to the object store
    for t, job in tree["jobs"].items():
        coord.put_job(int(t), np.asarray(job["params"], dtype=np.float32), np.dtype(job["dtype"]))
    # injected delays
    table = np.asarray(tree["delays"]["table"], dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != coord.n:
        raise CheckpointError(f"checkpoint {ck.path}: delay table shape {table.shape}")
    coord.delays.table = table
    # RNG states
    rng = tree["rng"]
    torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(int(v) for v in internal), gauss))
    coord.start_round = ck.round
    coord.runtime_before = float(run["runtime_s"])
    coord.sessions = int(run["sessions"]) + 1
    coord.resumed_from = str(ck.path)


class Checkpointer:
    """Writes the coordinator's checkpoints into ``root`` every ``every`` rounds and on stop."""

    def __init__(self, root: str | os.PathLike, every: int, keep: int = 2):
        self.root, self.every, self.keep = Path(root), int(every), int(keep)
        self.written: list[str] = []
        self.seconds = 0.0

    def due(self, r: int, start_round: int) -> bool:
        return r > start_round and r % self.every == 0

    def save(self, coord, r: int, runtime_s: float) -> Path:
        t0 = time.perf_counter()
        path = write_checkpoint(self.root, r, capture(coord, r, runtime_s), keep=self.keep)
        self.written.append(str(path))
        self.seconds += time.perf_counter() - t0
        return path


__all__ = ["ARRAYS_FILE", "FORMAT", "MANIFEST_FILE", "SAFE_OVERRIDES", "STATE_FILE", "VERSION",
           "Checkpoint", "CheckpointError", "Checkpointer", "capture", "check_resume_config",
           "checkpoints_in", "probe_writable", "read_checkpoint", "resolve", "restore_buffers",
           "restore_coordinator", "restore_scheme_and_policy", "resume_config", "write_checkpoint"]
