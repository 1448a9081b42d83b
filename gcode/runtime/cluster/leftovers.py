"""The folders a run makes outside its outputs, and what is left of them when a run dies.

A live run makes two private folders: the shared-memory transport's (``gcode-*`` under
``/dev/shm``) and, when it starts Ray itself, Ray's session folder (``gcray*`` under the temp
folder: sockets, worker logs). :func:`private_folder` makes each with an owner file naming the
process that made it (pid and start time). The run removes them when it ends; when it dies
without doing so (SIGKILL, the OOM killer), its reaper (:mod:`gcode.runtime.cluster.reaper`)
does, and if that died too, :func:`sweep` at the start of the next run removes every such folder
whose owner is gone, stopping the processes that still hold files in it, and says what it removed.

Ray's socket paths must fit AF_UNIX's 107 bytes: :func:`ray_temp_root` picks a temp folder short
enough for them (``$TMPDIR``, else ``/tmp``, else ``/dev/shm``) or says which to shorten.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

from ...config import ConfigError
from .procs import alive, holding, kill_known, start_time

OWNER_FILE = ".gcode-owner"
PREFIXES = ("gcode-", "gcray")
#: AF_UNIX socket paths hold at most 107 bytes (108 with the NUL) on Linux
SOCKET_PATH_MAX = 107
#: what Ray adds to its temp folder for its longest socket path: "/session_<date>_<time>_<us>_<pid>"
#: (pid up to 7 digits) and "/sockets/plasma_store"
RAY_SOCKET_SUFFIX = len("/session_2026-12-07_12-00-00_000000_1234567") + len("/sockets/plasma_store")
#: the folder gcode makes in the temp root for Ray ("/gcray" and mkdtemp's 8 characters)
RAY_FOLDER_CHARS = len("/gcray") + 8


def _owner() -> dict:
    return {"pid": os.getpid(), "start": start_time(os.getpid()), "host": socket.gethostname()}


def private_folder(prefix: str, root: str) -> str:
    """A new folder ``root/PREFIX*`` (mode 0700) with its owner file: this process."""
    folder = tempfile.mkdtemp(prefix=prefix, dir=root)
    Path(folder, OWNER_FILE).write_text(json.dumps(_owner()))
    return folder


def owner_gone(folder: str | os.PathLike) -> int | None:
    """The pid of a dead process that made ``folder`` (per its owner file on this host), or
    None: no owner file, another host's, or its owner still runs."""
    try:
        owner = json.loads(Path(folder, OWNER_FILE).read_text())
        pid, started, host = int(owner["pid"]), owner["start"], owner["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname() or alive(pid, started):
        return None
    return pid


def _roots() -> list[str]:
    from ..transport.shm_frames import shm_root
    roots = [shm_root(), tempfile.gettempdir(), "/tmp"]
    return list(dict.fromkeys(os.path.realpath(r) for r in roots if os.path.isdir(r)))


def _size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def remove(folder: Path) -> tuple[int, int]:
    """Stop the processes holding files in ``folder``, then remove it: (processes, bytes)."""
    stopped = kill_known(holding(str(folder)))
    size = _size(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return len(stopped), size


def _owner_pid(folder: str) -> int | None:
    try:
        return int(json.loads(Path(folder, OWNER_FILE).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_mine() -> None:
    """Remove the private folders this process made (a run that cannot clean up otherwise)."""
    for root in _roots():
        with contextlib.suppress(OSError):
            for entry in os.scandir(root):
                if entry.name.startswith(PREFIXES) and _owner_pid(entry.path) == os.getpid():
                    shutil.rmtree(entry.path, ignore_errors=True)


def sweep(owner: int | None = None) -> list[str]:
    """Remove the private folders of runs that died (of process ``owner`` only, when given),
    and stop what still holds them; returns one description per folder removed."""
    done = []
    uid = os.getuid()
    for root in _roots():
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            if not entry.name.startswith(PREFIXES):
                continue
            with contextlib.suppress(OSError):
                if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != uid:
                    continue
            dead = owner_gone(entry.path)
            if dead is None or (owner is not None and dead != owner):
                continue
            stopped, size = remove(Path(entry.path))
            done.append(f"{entry.path} ({size / 2**20:.1f} MiB"
                        + (f", {stopped} processes stopped" if stopped else "") + f") of pid {dead}")
    return done


def ray_temp_root() -> str:
    """A temp folder under which Ray's socket paths fit: $TMPDIR (Python's temp folder) when
    short enough, else /tmp, else /dev/shm; ConfigError naming TMPDIR when none is."""
    limit = SOCKET_PATH_MAX - RAY_SOCKET_SUFFIX - RAY_FOLDER_CHARS
    first = tempfile.gettempdir()
    for root in (first, "/tmp", "/dev/shm"):
        if len(os.fsencode(root)) <= limit and os.path.isdir(root) and os.access(root, os.W_OK):
            return root
    raise ConfigError("TMPDIR", f"{first!r} is {len(os.fsencode(first))} bytes long; Ray's socket "
                                f"paths under it would pass the {SOCKET_PATH_MAX}-byte limit of "
                                f"Unix sockets, and /tmp is not writable: set TMPDIR to a "
                                f"writable folder of at most {limit} bytes")


__all__ = ["OWNER_FILE", "owner_gone", "private_folder", "ray_temp_root", "remove", "remove_mine",
           "sweep"]
