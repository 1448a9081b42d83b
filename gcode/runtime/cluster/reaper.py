"""Nothing of a run outlives it: a small process that cleans up after a coordinator that dies
without doing so itself (SIGKILL, the OOM killer).

:meth:`Reaper.start` runs ``python -m gcode.runtime.cluster.reaper PID`` in a session of its own
(a kill of the coordinator's process group does not reach it), reading a pipe only the
coordinator writes. Every :data:`POLL_S` seconds it records the coordinator's descendants (the
Ray instance it started: raylet, GCS, agents, workers) with their start times. When the pipe
ends without the word ``done`` (or the coordinator is gone), the coordinator died: the reaper
kills the recorded processes that still run (when asked to: ``kill_tree``), removes the
coordinator's private folders (:func:`gcode.runtime.cluster.leftovers.sweep`: shared memory,
Ray's session folder), prints one line and exits. A run that ends normally says ``done`` and the
reaper exits at once. It imports nothing but the standard library and these two modules.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

POLL_S = 1.0
DONE = b"done\n"


class Reaper:
    """The coordinator's side: start it, then :meth:`close` when the run cleaned up itself."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def start(cls, kill_tree: bool) -> Reaper | None:
        """A reaper for this process; None where /proc is missing (nothing to watch with)."""
        if not os.path.isdir(f"/proc/{os.getpid()}"):
            return None
        args = [sys.executable, "-m", "gcode.runtime.cluster.reaper", str(os.getpid())]
        proc = subprocess.Popen(args + (["--kill-tree"] if kill_tree else []),
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
        return cls(proc)

    def close(self) -> None:
        """The run ended and removed what it made: the reaper exits without touching anything."""
        try:
            self.proc.stdin.write(DONE)
            self.proc.stdin.close()
        except OSError:  # it died: nothing to stop
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _watch(pid: int, started: str | None, kill_tree: bool) -> dict[int, str | None] | None:
    """Wait for the coordinator to end; its descendants (pid -> start time) when it died, None
    when it said ``done``."""
    from .procs import alive, descendants, start_time
    known: dict[int, str | None] = {}
    got = b""
    while True:
        ready, _, _ = select.select([sys.stdin.buffer], [], [], POLL_S)
        if ready:
            data = os.read(sys.stdin.fileno(), 64)
            got += data
            if got.endswith(DONE):
                return None
            if not data:
                return known
        if not alive(pid, started):
            return known
        if kill_tree:
            for child in descendants(pid):
                if child != os.getpid():
                    known.setdefault(child, start_time(child))


def main(argv: list[str]) -> int:
    from .leftovers import sweep
    from .procs import kill_known, start_time
    pid, kill_tree = int(argv[0]), "--kill-tree" in argv
    known = _watch(pid, start_time(pid), kill_tree)
    if known is None:
        return 0
    killed = kill_known(known)
    removed = sweep(owner=pid)
    if killed or removed:
        try:
            print(f"gcode: the run of pid {pid} died without cleaning up; its reaper stopped "
                  f"{len(killed)} of its processes and removed {len(removed)} folders"
                  + (f" ({'; '.join(removed)})" if removed else ""), file=sys.stderr, flush=True)
        except OSError:  # no terminal left to tell
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
