"""The files of a run checkpoint: writing, finding, verifying and decoding them, without pickle.


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
  allow_pickle=False)``, uncompressed, and read back entry by entry with each entry's header
  checked against its size (:func:`gcode.limits.load_npz`: no pickle, no decompression);
* ``manifest.json``: format, version, round, size and SHA-256 of both files, and the SHA-256 of the
  manifest itself. A torn or modified checkpoint fails verification with an error that names the
  folder and the file.

Writes are atomic: everything goes into ``DIR/.tmp-round-NNNNNNNN-XXXX/`` (same parent), each
file and the folder are fsynced, then the folder is renamed to ``round-NNNNNNNN`` and ``DIR`` is
fsynced. Older checkpoints are deleted only after the new one is complete (the newest
``checkpoint.keep`` are kept), so a crash at any instant leaves the previous checkpoint intact;
leftover ``.tmp-*`` folders are ignored by readers and removed by the next write.

Reading is bounded (:mod:`gcode.limits`) and verified three ways before anything is restored:
the manifest's checksums and sizes; the folder name, symbolic links and run ids
(:mod:`gcode.runtime.checkpoint.lock`); and the content against itself
(:mod:`gcode.runtime.checkpoint.checks`). Capture and restore of a coordinator, and the resume
semantics, are in :mod:`gcode.runtime.checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...config import ConfigError
from .lock import (  # CheckpointError and checkpoints_in are re-exported
    MANIFEST_FILE,
    CheckpointError,
    _round_of,
    check_owner,
    check_single_owner,
    checkpoints_in,
)

FORMAT = "gcode-checkpoint"
VERSION = 1
STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"


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
def sha256_file(path: Path) -> str:
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


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed .npz, every entry written with allow_pickle=False."""
    with open(path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def canonical_json(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


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
        write_npz(tmp / ARRAYS_FILE, arrays)
        _write_bytes(tmp / STATE_FILE, state_bytes)
        manifest = {"format": FORMAT, "version": VERSION, "round": int(round_), "run_id": run_id,
                    "created_unix": time.time(), "arrays": len(arrays),
                    "files": {f: {"bytes": (tmp / f).stat().st_size, "sha256": sha256_file(tmp / f)}
                              for f in (STATE_FILE, ARRAYS_FILE)}}
        manifest["manifest_sha256"] = hashlib.sha256(canonical_json(manifest)).hexdigest()
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
        """The run's config. An ``auto`` run written while auto defaulted to M = 2 models
        (before one model became the default) left ``train.models`` unset: it reads as the M
        the run trained, so the run resumes as it ran."""
        config = self.tree["config"]
        train, run = config.get("train") or {}, self.tree.get("run") or {}
        if (config.get("scheme") or {}).get("name") == "auto" and train.get("models") is None \
                and train.get("mode", "concurrent") == "concurrent" and run.get("models", 1) > 1:
            return {**config, "train": {**train, "models": run["models"]}}
        return config


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
    (:func:`gcode.runtime.checkpoint.checks.check_tree`)."""
    from ... import limits
    from .checks import check_tree
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
        digest = hashlib.sha256(canonical_json(manifest)).hexdigest()
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
        if sha256_file(fpath) != entry["sha256"]:
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


__all__ = ["ARRAYS_FILE", "FORMAT", "MANIFEST_FILE", "STATE_FILE", "VERSION", "Checkpoint",
           "CheckpointError", "canonical_json", "checkpoints_in", "probe_writable",
           "read_checkpoint", "resolve", "sha256_file", "write_checkpoint", "write_npz"]
