"""Output paths (logs, plots, results, traces): checks made before a run starts, and the two
ways gcode writes a file.

Checks: a directory where a file is due, or a file where a directory is due, is a one-line
error up front rather than a traceback after minutes of work. Each returns what is wrong, or
None.

Writes, safe in a directory other people can write to as well:

* :func:`atomic_output` for a file written whole (a plot, a trace, a result table): the
  content goes to a fresh temporary file created exclusively next to the target (``mkstemp``:
  a name nobody can plant beforehand), which is renamed over the target once complete. A
  symbolic link planted at the target is replaced, never written through; a failed write
  leaves the target as it was and no temporary file behind.
* :func:`open_exclusive` for a log written while a run goes on: locked against a second
  writer, opened without following a symbolic link (one to a device or FIFO, such as
  ``/dev/null`` or ``/dev/stdout``, is allowed), never truncating a file with other names.

Both raise OSError naming the target path (``gcode: error: PATH: No space left on device``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

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
    """What keeps ``path`` from being created or overwritten as a log file, or None."""
    p = Path(path)
    if not str(path).strip():
        return "must be a non-empty path"
    try:
        st = os.lstat(p)
    except OSError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            target = os.stat(p).st_mode
        except OSError:
            return _link_message(p)
        if not (stat.S_ISCHR(target) or stat.S_ISFIFO(target)):
            return _link_message(p)
    elif st is not None and stat.S_ISREG(st.st_mode) and st.st_nlink != 1:
        return _hard_link_message(p, st.st_nlink)
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


class UnsafeOutput(OSError):
    """An output path gcode will not write through (a planted link); the message says why."""


def _named(exc: OSError, path: str | os.PathLike) -> OSError:
    """``exc`` as an OSError of the same errno that names ``path``."""
    if isinstance(exc, UnsafeOutput):
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), os.fspath(path))


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """A file object whose content replaces ``path`` when the block ends without an error (see
    the module docstring). ``mode`` is "wb" or "w" (UTF-8). The new file gets the permissions a
    new file gets (0666 less the umask)."""
    path = Path(path)
    fd, tmp = -1, None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp",
                                   dir=path.parent if str(path.parent) else ".")
        f = os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        raise _named(exc, path) from None
    try:
        with f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _named(exc, path) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (:func:`atomic_output`)."""
    with atomic_output(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    """``fig.savefig`` into ``path`` through :func:`atomic_output` (format from its suffix)."""
    with atomic_output(path) as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", **kwargs)


def _link_message(path: str | os.PathLike) -> str:
    return (f"{path} is a symbolic link to {os.path.realpath(path)}; gcode does not write a log "
            f"through a link (only to a device such as /dev/null): give the target's own path, "
            f"or remove the link")


def _hard_link_message(path: str | os.PathLike, names: int) -> str:
    return (f"{path} has {names} names (hard links); gcode does not truncate a file another "
            f"name may stand for: remove it, or choose another path")


def _open_log(path: str | os.PathLike) -> int:
    """A write descriptor of the log ``path``: created or opened without following a symbolic
    link; a link is followed only to a device or FIFO (``/dev/null``, ``/dev/stdout``)."""
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise _named(exc, path) from None
        try:
            fd = os.open(path, flags)  # no O_CREAT: a dangling link creates nothing
        except OSError as exc2:
            if exc2.errno == errno.ENOENT:
                raise UnsafeOutput(_link_message(path)) from None
            raise _named(exc2, path) from None
        if stat.S_ISREG(os.fstat(fd).st_mode) or stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeOutput(_link_message(path)) from None
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_nlink != 1:
        os.close(fd)
        raise UnsafeOutput(_hard_link_message(path, st.st_nlink))
    os.set_blocking(fd, True)  # a pipe behind /dev/stdout must block, not fail, when full
    return fd


def open_exclusive(path: str | os.PathLike, mode: str = "w"):
    """``open(path, mode)`` for a log that one process writes at a time: the file is locked
    (``flock``, released on close or when the process dies) *before* it is truncated, so a
    second run given the same log path fails with :class:`FileInUse` instead of overwriting the
    first run's log; opened as :func:`_open_log` allows. ``mode`` is "w" or "wb"."""
    import fcntl
    fd = _open_log(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise FileInUse(f"{path} is being written by another process (another run with the same "
                        f"log path?); choose another path") from None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.ftruncate(fd, 0)
        return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    except BaseException:
        os.close(fd)
        raise


__all__ = ["FileInUse", "UnsafeOutput", "atomic_output", "open_exclusive", "output_dir_problem",
           "output_file_problem", "run_log_paths", "run_log_problem", "save_figure", "write_atomic"]
