"""Checkpoint and resume of a live run, without pickle.

A checkpoint is one folder ``DIR/round-NNNNNNNN/`` (NNNNNNNN: the next round to run) holding

* ``state.json``: the structure: format and version, the round, the config, the scheme state
  (:func:`gcode.codes.state.scheme_state`: spec + event log), the online tuner's state (scheme
  ``auto``), the coordinator's counters, the late-result bookkeeping, the decoder's stored results
  and fp64 accumulators, pending jobs, the optimizers' structure and scalars, the RNG states. Every
  array in it is a reference ``{"$array": NAME}`` into ``arrays.npz``; tuples, non-string keys and
  non-finite floats are tagged (``$tuple``, ``$items``, ``$float``) so the tree round-trips
  exactly;
* ``arrays.npz``: every array (model parameters and buffers, optimizer tensors, job parameter
  snapshots, stored worker results, decode accumulators, the injected-delay table, tuner history,
  RNG states), written entry by entry with ``numpy.lib.format.write_array(...,
  allow_pickle=False)`` and read with ``np.load(..., allow_pickle=False)``;
* ``manifest.json``: format, version, round, size and SHA-256 of both files, and the SHA-256 of the
  manifest itself. A torn or modified checkpoint fails verification with an error that names the
  folder and the file.

Writes are atomic: everything goes into ``DIR/.tmp-round-NNNNNNNN-XXXX/`` (same parent), each
file and the folder are fsynced, then the folder is renamed to ``round-NNNNNNNN`` and ``DIR`` is
fsynced. Older checkpoints are deleted only after the new one is complete (the newest
``checkpoint.keep`` are kept), so a crash at any instant leaves the previous checkpoint intact;
leftover ``.tmp-*`` folders are ignored by readers and removed by the next write.

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

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, TrainConfig

FORMAT = "gcode-checkpoint"
VERSION = 1
STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"
MANIFEST_FILE = "manifest.json"
_NAME = re.compile(r"^round-(\d{8})$")

#: config fields that may differ between a checkpoint and the run resuming it: where and how the
#: run executes, logs and checkpoints, fault injection and diagnostics. They never change what is
#: computed. Every other field (scheme, policy, workers, model, data, optimizer, seed, injection,
#: streaming decode) must be equal.
SAFE_OVERRIDES = ("log.", "checkpoint.", "faults", "cluster.address", "cluster.num_cpus",
                  "cluster.worker_cpus", "cluster.placement", "cluster.max_restarts",
                  "cluster.round_timeout_s", "cluster.startup_timeout_s",
                  "cluster.retry_backoff_s", "train.check_decode", "train.eval_every",
                  "cluster.gpus_per_worker", "cluster.coordinator_device", "cluster.decode_device",
                  "cluster.decode_threads")


class CheckpointError(ValueError):
    """A checkpoint cannot be written, found, verified or restored; the message says which."""


# ---- a JSON tree with arrays out of line ----------------------------------------------------
def _encode(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    """JSON-able copy of ``value``; arrays (numpy, torch) go to ``arrays`` under ``path``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else {"$float": repr(f)}
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        try:
            value = value.detach().cpu().numpy()
        except (TypeError, RuntimeError) as exc:  # e.g. bfloat16 has no numpy dtype
            raise CheckpointError(f"cannot store the {value.dtype} tensor at {path!r} in a "
                                  f"checkpoint: {exc}") from None
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.dtype.kind not in "biufc":
            raise CheckpointError(f"cannot store {value.dtype} array at {path!r} in a checkpoint")
        name = path or "root"
        if name in arrays:
            raise CheckpointError(f"duplicate array name {name!r}")
        arrays[name] = np.array(value, copy=True, order="C")  # (ascontiguousarray makes 0-d 1-d)
        return {"$array": name}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, arrays, f"{path}/{k}") for k, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{path}/{k}") for k, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") and "/" not in k for k in value):
            return {k: _encode(v, arrays, f"{path}/{k}") for k, v in value.items()}
        return {"$items": [[_encode(k, arrays, f"{path}/k{i}"), _encode(v, arrays, f"{path}/{i}")]
                           for i, (k, v) in enumerate(value.items())]}
    raise CheckpointError(f"cannot store a {type(value).__name__} at {path!r} in a checkpoint")


def _decode(value: Any, arrays: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, inner), = value.items()
            if tag == "$array":
                if inner not in arrays:
                    raise CheckpointError(f"state refers to array {inner!r}, missing in {ARRAYS_FILE}")
                return arrays[inner]
            if tag == "$float":
                return float(inner)
            if tag == "$tuple":
                return tuple(_decode(v, arrays) for v in inner)
            if tag == "$items":
                return {_decode(k, arrays): _decode(v, arrays) for k, v in inner}
        return {k: _decode(v, arrays) for k, v in value.items()}
    return value


# ---- files ----------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed .npz, every entry written with allow_pickle=False."""
    with open(path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _round_of(path: Path) -> int | None:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else None


def checkpoints_in(root: str | os.PathLike) -> list[Path]:
    """The ``round-NNNNNNNN`` folders of ``root``, oldest first (complete or not)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _round_of(p) is not None]
    return sorted(found, key=lambda p: _round_of(p))


def _prune(root: Path, keep: int, newest: Path) -> None:
    """Keep the newest ``keep`` checkpoints up to ``newest``; drop later rounds (an abandoned
    timeline after resuming from an older checkpoint) and leftovers of interrupted writes."""
    rounds = checkpoints_in(root)
    limit = _round_of(newest)
    older = [p for p in rounds if _round_of(p) <= limit]
    doomed = [p for p in rounds if _round_of(p) > limit] + older[:-keep]
    doomed += [p for p in root.iterdir() if p.is_dir() and p.name.startswith((".tmp-round-", ".old-round-"))]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)


def write_checkpoint(root: str | os.PathLike, round_: int, tree: dict, keep: int = 2) -> Path:
    """Write ``tree`` as checkpoint ``root/round-NNNNNNNN`` atomically; returns its path.

    Raises :class:`CheckpointError` naming the folder when the disk refuses (full, read-only,
    permissions); the previous checkpoint is then untouched and nothing half-written remains under
    a ``round-`` name."""
    from .checkpoint_dir import check_owner
    root = Path(root)
    run = tree.get("run") if isinstance(tree, dict) else None
    run_id = run.get("run_id") if isinstance(run, dict) else None
    check_owner(root, run_id)
    arrays: dict[str, np.ndarray] = {}
    doc = _encode(tree, arrays, "")
    state_bytes = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    name = f"round-{int(round_):08d}"
    final = root / name
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
        _write_npz(tmp / ARRAYS_FILE, arrays)
        _write_bytes(tmp / STATE_FILE, state_bytes)
        manifest = {"format": FORMAT, "version": VERSION, "round": int(round_), "run_id": run_id,
                    "created_unix": time.time(), "arrays": len(arrays),
                    "files": {f: {"bytes": (tmp / f).stat().st_size, "sha256": _sha256(tmp / f)}
                              for f in (STATE_FILE, ARRAYS_FILE)}}
        manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
        _write_bytes(tmp / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
        _fsync_dir(tmp)
        old = None
        if final.exists():  # rewriting a round (resumed from an older checkpoint)
            old = root / f".old-{name}-{os.getpid()}"
            os.rename(final, old)
        os.rename(tmp, final)
        tmp = None
        _fsync_dir(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        try:
            prev = [p for p in checkpoints_in(root) if p != final]
        except OSError:
            prev = []
        kept = f"the previous checkpoint {prev[-1]} is intact" if prev else "no earlier checkpoint exists"
        raise CheckpointError(f"checkpoint.dir: cannot write the round-{round_} checkpoint to "
                              f"{root}: {exc.strerror or exc} ({type(exc).__name__}, errno "
                              f"{exc.errno}); {kept}") from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        _prune(root, keep, final)
    except OSError:  # pragma: no cover - pruning is best effort; the new checkpoint is complete
        pass
    return final


def probe_writable(root: str | os.PathLike) -> None:
    """Fail early (ConfigError naming checkpoint.dir) when ``root`` cannot hold checkpoints."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=".tmp-probe-", dir=root))
        _write_bytes(probe / "probe", b"gcode")
        shutil.rmtree(probe)
    except OSError as exc:
        raise ConfigError("checkpoint.dir", f"{root} is not writable: {exc.strerror or exc} "
                                            f"({type(exc).__name__})") from None


# ---- reading --------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    path: Path
    round: int
    tree: dict                 # decoded state.json, arrays in place

    @property
    def config(self) -> dict:
        return self.tree["config"]


def resolve(path: str | os.PathLike) -> Path:
    """The checkpoint folder ``path`` names: itself when it holds a manifest, else its newest
    ``round-NNNNNNNN`` folder."""
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"checkpoint.resume: no such checkpoint directory: {p}")
    if (p / MANIFEST_FILE).exists() or _round_of(p) is not None:
        return p
    rounds = checkpoints_in(p)
    if not rounds:
        tmp = [q.name for q in p.iterdir() if q.name.startswith(".tmp-round-")]
        extra = f" (only interrupted writes: {', '.join(sorted(tmp))})" if tmp else ""
        raise CheckpointError(f"checkpoint.resume: {p} holds no checkpoint (no round-NNNNNNNN "
                              f"folder){extra}")
    return rounds[-1]


def _manifest_problem(manifest: Any) -> str | None:
    """What is wrong with the structure of a parsed manifest (its checksum already matches)."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"{MANIFEST_FILE} is not a {FORMAT} manifest"
    rnd = manifest.get("round")
    if not isinstance(rnd, int) or isinstance(rnd, bool) or not 0 <= rnd < 10 ** 8:
        return f"{MANIFEST_FILE}: 'round' must be an integer in [0, 1e8), got {rnd!r}"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return f"{MANIFEST_FILE}: 'files' must be an object, got a {type(files).__name__}"
    for fname in (STATE_FILE, ARRAYS_FILE):
        entry = files.get(fname)
        if not isinstance(entry, dict):
            return f"the manifest does not list {fname}"
        size, digest = entry.get("bytes"), entry.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return f"{MANIFEST_FILE}: files.{fname}.bytes must be an integer >= 0, got {size!r}"
        if not isinstance(digest, str):
            return f"{MANIFEST_FILE}: files.{fname}.sha256 must be a string, got {digest!r}"
    run_id = manifest.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        return f"{MANIFEST_FILE}: 'run_id' must be a string, got {run_id!r}"
    return None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Find (:func:`resolve`), verify (manifest, sizes, SHA-256, folder name, run id, bounded
    sizes and nesting) and decode a checkpoint, then check its content against itself
    (:func:`gcode.runtime.checkpoint_checks.check_tree`)."""
    from .. import limits
    from .checkpoint_checks import check_tree
    from .checkpoint_dir import check_single_owner
    folder = resolve(path)
    older = [p for p in checkpoints_in(folder.parent) if p != folder and
             (_round_of(p) or 0) < (_round_of(folder) or 0)]
    hint = f"; an older checkpoint is {older[-1]} (resume from it explicitly)" if older else ""

    def damaged(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {folder} is damaged or incomplete: {why}{hint}")

    links = [q.name for q in (folder, *(folder / f for f in (MANIFEST_FILE, STATE_FILE, ARRAYS_FILE)))
             if q.is_symlink()]
    if links:
        raise damaged(f"{links[0]} is a symbolic link; a checkpoint is a real folder of real files "
                      f"(a link could lead to another run's checkpoint)")
    mpath = folder / MANIFEST_FILE
    if not mpath.is_file():
        raise damaged(f"no {MANIFEST_FILE}")
    try:
        manifest = limits.loads_json(limits.read_bytes(mpath, limits.MAX_CONFIG_BYTES, "manifest"),
                                     MANIFEST_FILE, limit=8)
        claimed = manifest.pop("manifest_sha256")
        digest = hashlib.sha256(_canonical(manifest)).hexdigest()
    except (ValueError, KeyError, AttributeError, TypeError):
        raise damaged(f"{MANIFEST_FILE} is not a valid manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise damaged(f"{MANIFEST_FILE} is not a {FORMAT} manifest")
    if digest != claimed:
        raise damaged(f"{MANIFEST_FILE} does not match its checksum (modified)")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {folder}: format version {manifest.get('version')} is "
                              f"not supported (this gcode reads version {VERSION})")
    problem = _manifest_problem(manifest)
    if problem is not None:
        raise damaged(problem)
    named = _round_of(folder)
    if named is not None and named != manifest["round"]:
        raise damaged(f"the folder is named for round {named} but its manifest is of round "
                      f"{manifest['round']} (a renamed or copied folder)")
    for fname in (STATE_FILE, ARRAYS_FILE):
        entry = manifest["files"][fname]
        fpath = folder / fname
        if not fpath.is_file():
            raise damaged(f"{fname} is missing")
        if fpath.stat().st_size != entry["bytes"]:
            raise damaged(f"{fname} has {fpath.stat().st_size} bytes, the manifest says "
                          f"{entry['bytes']} (torn write or modified file)")
        if _sha256(fpath) != entry["sha256"]:
            raise damaged(f"{fname} does not match its SHA-256 in the manifest (modified or "
                          f"corrupted)")
    try:
        doc = limits.loads_json((folder / STATE_FILE).read_bytes(), STATE_FILE)
        arrays = limits.load_npz(folder / ARRAYS_FILE)
    except ValueError as exc:
        raise damaged(f"cannot be read: {exc}".replace(str(folder) + "/", "")) from None
    except OSError as exc:
        raise damaged(f"cannot be read: {exc.strerror or exc}") from None
    try:
        tree = _decode(doc, arrays)
    except CheckpointError as exc:
        raise damaged(str(exc)) from None
    if not isinstance(tree, dict) or tree.get("format") != FORMAT or tree.get("round") != manifest["round"]:
        raise damaged(f"{STATE_FILE} does not match the manifest")
    run = tree.get("run")
    run_id = run.get("run_id") if isinstance(run, dict) else None
    if manifest.get("run_id") is not None and manifest["run_id"] != run_id:
        raise damaged(f"{STATE_FILE} is of run {str(run_id)[:16]} but the manifest of run "
                      f"{manifest['run_id'][:16]}")
    ck = Checkpoint(folder, int(tree["round"]), tree)
    problem = check_tree(ck)
    if problem is not None:
        raise CheckpointError(f"checkpoint {folder} is inconsistent: {problem}{hint}")
    check_single_owner(folder.parent, run_id, folder)
    return ck


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
    checkpoint's config, ignoring :data:`SAFE_OVERRIDES`."""
    a, b = _flat(_plain(saved)), _flat(_plain(cfg.to_dict()))
    differ = [k for k in b if not k.startswith(SAFE_OVERRIDES) and k != "faults"
              and a.get(k) != b.get(k)]
    differ += [k for k in a if k not in b and not k.startswith(SAFE_OVERRIDES)]
    if differ:
        k = differ[0]
        more = f"; also differ: {', '.join(differ[1:])}" if differ[1:] else ""
        raise ConfigError(k, f"differs from the checkpoint's config (checkpoint: {a.get(k)!r}, "
                             f"this run: {b.get(k)!r}){more}. A resumed run must compute the "
                             f"same thing: resume with the checkpoint's own config (gcode train "
                             f"--resume DIR, changing only log, checkpoint, cluster placement/"
                             f"timeouts, GPUs, faults, check_decode or eval_every), or start a new run "
                             f"in a fresh checkpoint.dir")


def resume_config(path: str | os.PathLike) -> TrainConfig:
    """The config a checkpoint was written with, set to resume from it (``checkpoint.resume``)."""
    from ..config import from_dict
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
            "results": [[tuple(key), dec.sig[key], arr, dec.losses[key]]
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

    from ..codes.state import scheme_state
    from .health import check_all_params
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
            "stragglers_total": coord.stragglers_total, "max_rel_error": coord.max_rel_error,
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
    from ..codes.state import restore_scheme
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


def restore_coordinator(coord, ck: Checkpoint) -> None:
    """Put a freshly built coordinator (same config, restored scheme) into the checkpoint's state:
    models, optimizers, counters, decoder, pending jobs (re-put to the object store), delay table,
    RNG states. The next ``coord.run()`` starts at the checkpoint's round."""
    from .checkpoint_checks import check_against
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

    from ..codes import ResultKey
    from .decode import _Job
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
           "checkpoints_in", "probe_writable", "read_checkpoint", "resolve", "restore_coordinator",
           "restore_scheme_and_policy", "resume_config", "write_checkpoint"]
