"""One run per checkpoint directory: an exclusive lock held for the whole run, and the run id
checked on every write and on resume.

* :func:`claimed` (a context manager around a live run) takes an exclusive ``flock`` on
  ``DIR/.gcode-lock`` for ``checkpoint.dir`` and on the directory a run resumes from. A second
  run on the same directory refuses to start with a ConfigError naming the directory and the
  holder (pid, host, start time). The kernel releases the lock when its process dies, even by
  SIGKILL, so a crashed run never leaves the directory locked.
* :func:`check_owner` runs before every checkpoint write: every ``round-*`` folder already in
  the directory must carry this run's id, and the lock file must still be the one this process
  locked. Where locks do not work (some network file systems, a deleted lock file, a process
  that bypasses them), the second writer therefore fails at its first write with a
  CheckpointError, and the first run's checkpoints are never touched.
* :func:`owners` lists the run ids of a directory's checkpoints (their manifests only), so a
  resume refuses a directory that mixes two runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ...config import ConfigError, TrainConfig

LOCK_FILE = ".gcode-lock"
MANIFEST_FILE = "manifest.json"
_NAME = re.compile(r"^round-(\d{8})$")


class CheckpointError(ValueError):
    """A checkpoint cannot be written, found, verified or restored; the message says which."""


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

#: directory (resolved) -> the open, locked file descriptor of its lock file, for this process
_held: dict[Path, int] = {}


def _holder(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            info = json.loads(f.read(4096) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started_unix"])))
        return f"pid {int(info['pid'])} on {str(info['host'])[:64]}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _lock(root: Path, field: str, create: bool) -> int | None:
    """Lock ``root`` exclusively; the locked fd, or None when ``root`` cannot hold a lock file
    and ``create`` is False (a read-only directory a run only resumes from)."""
    import fcntl
    path = root / LOCK_FILE
    try:
        if create:
            root.mkdir(parents=True, exist_ok=True)
        # read-only: flock needs no write access, and a file held open for writing would keep
        # the file system from being remounted read-only underneath the run
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        if not create:
            return None
        raise ConfigError(field, f"{root} is not writable: {exc.strerror or exc} "
                                 f"({type(exc).__name__})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(field, f"{root} is in use by another gcode run ({_holder(path)}); two "
                                 f"runs must never share a checkpoint directory: wait for that "
                                 f"run to end, or choose another directory") from None
    stamp = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                        "started_unix": time.time()}).encode()
    try:  # who holds it, for the message a second run prints; written under the lock
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(stamp)
    except OSError:  # the lock itself holds; the note about its holder is a courtesy
        pass
    return fd


def resume_root(resume: str | os.PathLike) -> Path:
    """The directory that holds the checkpoint ``resume`` names (a DIR or DIR/round-N)."""
    p = Path(resume)
    return p.parent if (p / MANIFEST_FILE).exists() or p.name.startswith("round-") else p


@contextlib.contextmanager
def claimed(cfg: TrainConfig) -> Iterator[None]:
    """Hold the locks of ``checkpoint.dir`` and of the directory resumed from while the block
    runs (see the module docstring)."""
    wanted: dict[Path, tuple[str, bool]] = {}
    if cfg.checkpoint.resume is not None:
        wanted[resume_root(cfg.checkpoint.resume).resolve()] = ("checkpoint.resume", False)
    if cfg.checkpoint.dir is not None:
        wanted[Path(cfg.checkpoint.dir).resolve()] = ("checkpoint.dir", True)
    mine: list[Path] = []
    try:
        for root, (field, create) in wanted.items():
            if root in _held:
                raise ConfigError(field, f"{root} is in use by another run of this process")
            fd = _lock(root, field, create)
            if fd is not None:
                _held[root] = fd
                mine.append(root)
        yield
    finally:
        for root in mine:
            os.close(_held.pop(root))


def _manifest_run_id(folder: Path) -> str | None:
    try:
        with open(folder / MANIFEST_FILE, "rb") as f:
            data = json.loads(f.read(1 << 20))
        run_id = data.get("run_id") if isinstance(data, dict) else None
        return run_id if isinstance(run_id, str) else None
    except (OSError, ValueError, RecursionError):
        return None


def owners(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Run id -> the ``round-*`` folders of ``root`` that carry it (manifests without one are
    left out: checkpoints of an older gcode)."""
    out: dict[str, list[Path]] = {}
    for folder in checkpoints_in(root):
        run_id = _manifest_run_id(folder)
        if run_id is not None:
            out.setdefault(run_id, []).append(folder)
    return out


def check_owner(root: Path, run_id: str | None) -> None:
    """Before writing a checkpoint of run ``run_id`` into ``root``: no folder of another run is
    there, and the lock this process took on ``root`` (if any) is still in place."""
    fd = _held.get(root.resolve()) if root.exists() else None
    if fd is not None:
        try:
            still = os.stat(root / LOCK_FILE).st_ino == os.fstat(fd).st_ino
        except OSError:
            still = False
        if not still:
            raise CheckpointError(f"checkpoint.dir: the lock file {root / LOCK_FILE} was removed "
                                  f"or replaced while this run held it; another process may be "
                                  f"writing into {root}, so this run stops without writing")
    if run_id is None:
        return
    for other, folders in owners(root).items():
        if other != run_id:
            raise CheckpointError(f"checkpoint.dir: {root} holds {folders[-1].name} of run "
                                  f"{other[:16]}, not of this run ({run_id[:16]}): another run "
                                  f"writes into this directory; this run stops without writing, "
                                  f"and leaves every checkpoint there as it is")


def check_single_owner(root: Path, run_id: str | None, folder: Path) -> None:
    """On resume: ``root`` holds checkpoints of the resumed run only."""
    others = {k: v for k, v in owners(root).items() if k != run_id}
    if others:
        other, folders = next(iter(others.items()))
        raise CheckpointError(f"checkpoint {folder}: {root} mixes checkpoints of two runs "
                              f"({run_id and run_id[:16]} and {other[:16]} in "
                              f"{folders[-1].name}); resume from one folder explicitly "
                              f"(--resume {folder}) after moving the other run's away")


__all__ = ["LOCK_FILE", "check_owner", "check_single_owner", "claimed", "owners", "resume_root"]
