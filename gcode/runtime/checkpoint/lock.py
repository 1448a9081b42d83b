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
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from ...config import ConfigError, TrainConfig, how_to_set

LOCK_FILE = ".gcode-lock"
#: how the lock file is opened: never through a symbolic link, never blocking on a FIFO
_SAFE_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
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
        fd = os.open(path, os.O_RDONLY | _SAFE_OPEN)
        with os.fdopen(fd, "rb") as f:
            info = json.loads(f.read(4096) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started_unix"])))
        return f"pid {int(info['pid'])} on {str(info['host'])[:64]}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _lock(root: Path, field: str, create: bool) -> int | None:
    """Lock ``root`` exclusively; the locked fd, or None when ``root`` cannot hold a lock file
    and ``create`` is False (a read-only directory a run only resumes from). The lock file is
    opened without following a symbolic link and only as a regular file with one name, so a
    file planted at its name (a link to someone else's file) is refused, never written."""
    import errno
    import fcntl
    path = root / LOCK_FILE
    try:
        if create:
            root.mkdir(parents=True, exist_ok=True)
        # read-only: flock needs no write access, and a file held open for writing would keep
        # the file system from being remounted read-only underneath the run
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | _SAFE_OPEN, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR):
            what = "a symbolic link" if exc.errno == errno.ELOOP else "a folder"
            raise ConfigError(field, _planted(path, what)) from None
        if not create:
            return None
        raise ConfigError(field, f"{root} is not writable: {exc.strerror or exc} "
                                 f"({type(exc).__name__})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else \
            f"a hard link ({st.st_nlink} names for one file)"
        raise ConfigError(field, _planted(path, what))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(field, f"{root} is in use by another gcode run ({_holder(path)}); two "
                                 f"runs must never share a checkpoint directory: wait for that "
                                 f"run to end, or choose another directory") from None
    _stamp(path, st)
    return fd


def _planted(path: Path, what: str) -> str:
    return (f"{path} is {what}, not a lock file gcode made; gcode never writes through it. "
            f"Remove it (look at what it points to first), or choose another directory")


def _stamp(path: Path, locked: os.stat_result) -> None:
    """Who holds the lock, for the message a second run prints; written under the lock, into
    the locked file only (opened again without following links, checked to be that file)."""
    stamp = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                        "started_unix": time.time()}).encode()
    try:
        fd = os.open(path, os.O_WRONLY | _SAFE_OPEN)
    except OSError:  # the lock itself holds; the note about its holder is a courtesy
        return
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (locked.st_dev, locked.st_ino):
            os.ftruncate(fd, 0)
            os.write(fd, stamp)
    except OSError:
        pass
    finally:
        os.close(fd)


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
            still = os.lstat(root / LOCK_FILE).st_ino == os.fstat(fd).st_ino
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
                              f"({how_to_set('checkpoint.resume', str(folder))}) after moving "
                              f"the other run's away")


__all__ = ["LOCK_FILE", "check_owner", "check_single_owner", "claimed", "owners", "resume_root"]
