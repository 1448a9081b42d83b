"""Processes as /proc shows them (Linux): a pid with its start time names one process, not a
later one that reused the pid. Elsewhere every function answers "unknown" (None, empty)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state, ppid, pgrp, session, ...), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time), to tell a process from a later one of that pid."""
    fields = _stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def alive(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` that started at ``started`` still runs (a zombie does not)."""
    fields = _stat(pid)
    return (fields is not None and len(fields) > 19 and fields[19] == started
            and fields[0] not in ("Z", "X"))


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out += [int(c) for c in text.split()]
    except (OSError, ValueError):
        pass
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree (children, theirs, ...)."""
    out, todo = [], children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children(child)
    return out


def kill_known(known: dict[int, str | None]) -> list[int]:
    """SIGKILL each pid still running as the process recorded (pid -> start time); returns
    those killed."""
    killed = []
    for pid, started in known.items():
        if started is not None and alive(pid, started):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def wait_gone(known: dict[int, str | None], timeout_s: float) -> None:
    """Wait until none of ``known`` (pid -> start time) runs any more, at most ``timeout_s``
    seconds: a SIGKILL is delivered at once, but the process ends when it is next scheduled."""
    deadline = time.monotonic() + timeout_s
    while any(alive(pid, started) for pid, started in known.items()) and time.monotonic() < deadline:
        time.sleep(0.01)


def holding(folder: str) -> dict[int, str | None]:
    """Processes of this user with a file open, or their working directory, inside ``folder``
    (pid -> start time)."""
    top = os.path.realpath(folder)
    prefix = top + os.sep
    found: dict[int, str | None] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            paths = ["cwd", *(f"fd/{fd}" for fd in os.listdir(f"/proc/{entry}/fd"))]
        except OSError:  # gone, or another user's
            continue
        links = []
        for path in paths:
            with contextlib.suppress(OSError):
                links.append(os.readlink(f"/proc/{entry}/{path}"))
        if any(link == top or link.startswith(prefix) for link in links):
            found[int(entry)] = start_time(int(entry))
    return found


__all__ = ["alive", "children", "descendants", "holding", "kill_known", "start_time", "wait_gone"]
