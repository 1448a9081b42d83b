"""Checks of output paths (logs, plots, results), made before a run starts, so that a directory
where a file is due, or a file where a directory is due, is a one-line error up front rather
than a traceback after minutes of work. Each check returns what is wrong, or None."""

from __future__ import annotations

import os
from pathlib import Path

PB_SUFFIX = ".pb"
JSONL_SUFFIX = ".jsonl"


def _first_existing(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists() or parent.is_symlink():
            return parent
    return Path(".")


def _parent_problem(path: Path) -> str | None:
    """The nearest existing ancestor must be a writable directory (the rest gets created)."""
    base = _first_existing(path.parent if str(path.parent) else Path("."))
    if not base.is_dir():
        return f"{path}: {base} is a file, not a directory"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{path}: the directory {base} is not writable"
    return None


def output_file_problem(path: str | os.PathLike) -> str | None:
    """What keeps ``path`` from being created or overwritten as a file, or None."""
    p = Path(path)
    if not str(path).strip():
        return "must be a non-empty path"
    if p.is_dir():
        return f"{p} is a directory; give a file path"
    if p.exists() and not os.access(p, os.W_OK):
        return f"{p} is not writable"
    return _parent_problem(p)


def output_dir_problem(path: str | os.PathLike, writable: bool = True) -> str | None:
    """What keeps ``path`` from being created or used as a directory, or None (``writable``:
    also whether this process may write there now)."""
    p = Path(path)
    if not str(path).strip():
        return "must be a non-empty path"
    if p.exists() and not p.is_dir():
        return f"{p} is a file, not a directory"
    if p.is_dir():
        ok = not writable or os.access(p, os.W_OK | os.X_OK)
        return None if ok else f"the directory {p} is not writable"
    base = _first_existing(p.parent if str(p.parent) else Path("."))
    if not base.is_dir():
        return f"{p}: {base} is a file, not a directory"
    return _parent_problem(p) if writable else None


def run_log_paths(prefix: str | os.PathLike) -> tuple[Path, Path]:
    """(PREFIX.pb, PREFIX.jsonl) of a run-log prefix (a given .pb/.jsonl suffix is dropped)."""
    base = Path(prefix)
    if base.suffix in (PB_SUFFIX, JSONL_SUFFIX):
        base = base.with_suffix("")
    return base.with_name(base.name + PB_SUFFIX), base.with_name(base.name + JSONL_SUFFIX)


def run_log_problem(prefix: str | os.PathLike) -> str | None:
    """What keeps the run log PREFIX.pb / PREFIX.jsonl from being written, or None."""
    if not str(prefix).strip():
        return "must be a non-empty path prefix"
    for path in run_log_paths(prefix):
        problem = output_file_problem(path)
        if problem is not None:
            return problem
    return None


class FileInUse(OSError):
    """Another process holds the file open for writing (see :func:`open_exclusive`)."""


def open_exclusive(path: str | os.PathLike, mode: str = "w"):
    """``open(path, mode)`` for a log that one process writes at a time: the file is locked
    (``flock``, released on close or when the process dies) *before* it is truncated, so a
    second run given the same log path fails with :class:`FileInUse` instead of overwriting the
    first run's log. ``mode`` is "w" or "wb"."""
    import fcntl
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise FileInUse(f"{path} is being written by another process (another run with the same "
                        f"log path?); choose another path") from None
    try:
        import stat
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.ftruncate(fd, 0)
        return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    except BaseException:
        os.close(fd)
        raise


__all__ = ["FileInUse", "open_exclusive", "output_dir_problem", "output_file_problem",
           "run_log_paths", "run_log_problem"]
