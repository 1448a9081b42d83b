"""A one-line message, not silence, when the local Ray node dies under ``gcode train``.

If the raylet of the Ray instance a run started for itself is killed (SIGKILL, the OOM killer),
Ray ends the driver process about two seconds later with exit status 1 and no message of
gcode's, and the instance's other processes may stay behind. :class:`RayletWatchdog` polls that
raylet (a child process of the driver) every :data:`POLL_S` seconds; when it has died it prints
one line naming the raylet, how it ended and the last checkpoint to resume from, kills the
processes of that Ray instance (its daemons and the raylet's worker processes, recorded while
the raylet lived) and removes the run's private folders (shared memory, Ray's session folder),
and exits with status 1. It never touches any other Ray instance.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from .leftovers import remove_mine
from .procs import children, kill_known, start_time, wait_gone

POLL_S = 0.1
EXIT_STATUS = 1


def _how(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class RayletWatchdog:
    """Watch the raylet of the local Ray instance this process started (see the module doc)."""

    def __init__(self, checkpoint_dir: str | None = None, out=None):
        self.checkpoint_dir = checkpoint_dir
        self.out = out or sys.stderr
        self._stop = threading.Event()
        self._known: dict[int, str | None] = {}   # pid -> start time, of the instance's processes
        self._thread = threading.Thread(target=self._run, name="gcode-raylet-watchdog", daemon=True)

    def start(self) -> RayletWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _raylet(self):
        """(raylet Popen, [daemon Popen]) of the local instance, once Ray runs here."""
        try:
            import ray
            if not ray.is_initialized():
                return None, []
            node = ray._private.worker._global_node
            procs = {k: [p.process for p in v] for k, v in node.all_processes.items()}
        except Exception:  # noqa: BLE001 - Ray internals moved, or connect-only: nothing to watch
            return None, []
        raylets = procs.pop("raylet", [])
        return (raylets[0] if raylets else None), [p for ps in procs.values() for p in ps]

    def _run(self) -> None:
        raylet, daemons = None, []
        polls = 0
        while not self._stop.wait(POLL_S):
            if raylet is None:
                raylet, daemons = self._raylet()
                continue
            if polls % 10 == 0:  # remember the workers while their parent lives
                for pid in [p.pid for p in daemons] + children(raylet.pid):
                    self._known.setdefault(pid, start_time(pid))
            polls += 1
            if raylet.poll() is not None:
                import ray
                if self._stop.is_set() or not ray.is_initialized():
                    return  # ray.shutdown() disconnects before it stops the raylet: on purpose
                self._fail(raylet)

    def _last_checkpoint(self) -> str:
        if not self.checkpoint_dir:
            return "no checkpoint.dir was set, so nothing can be resumed"
        from ..checkpoint.files import checkpoints_in
        found = checkpoints_in(self.checkpoint_dir)
        if not found:
            return f"no checkpoint was written to {self.checkpoint_dir} yet"
        return f"resume with gcode train --resume {self.checkpoint_dir} (newest {found[-1].name})"

    def _fail(self, raylet) -> None:
        print(f"gcode: error: the local Ray node died under the run (its raylet, pid "
              f"{raylet.pid}, {_how(raylet.returncode)}); the run cannot continue; "
              f"{self._last_checkpoint()}; stopping what is left of that Ray instance",
              file=self.out, flush=True)
        killed = kill_known(self._known)
        # the run's shared memory and Ray folder, at once: Ray ends this process about two
        # seconds after its raylet died, and a folder left then is the reaper's to report
        remove_mine()
        wait_gone({pid: self._known[pid] for pid in killed}, 2.0)  # gone before the reaper looks
        remove_mine()  # what a dying process wrote meanwhile: nothing is left for the reaper
        os._exit(EXIT_STATUS)


@contextlib.contextmanager
def watching(enabled: bool, checkpoint_dir: str | None = None) -> Iterator[None]:
    """Run the block under a :class:`RayletWatchdog` when ``enabled``."""
    dog = RayletWatchdog(checkpoint_dir).start() if enabled else None
    try:
        yield
    finally:
        if dog is not None:
            dog.stop()


__all__ = ["POLL_S", "RayletWatchdog", "watching"]
