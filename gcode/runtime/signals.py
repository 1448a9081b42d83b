"""SIGTERM (systemd, Slurm, Kubernetes) during a live run: treated as an orderly stop.

The first SIGTERM asks the run to stop as a monitor's ``RequestStop`` does: the current round
ends and decodes, a checkpoint is written when ``checkpoint.dir`` is set, and the run returns
with ``stopped`` and ``signal`` ("SIGTERM") in its metrics; ``gcode train`` then prints one line
and exits with status 143 (128 + 15). A second SIGTERM stops at once: :class:`Interrupted` (a
KeyboardInterrupt, as Ctrl-C raises) is raised where the run is, and the run's cleanup (workers,
Ray, shared memory) still runs. A process told to terminate starts no further run: a later run
in it raises :class:`Interrupted` at once (a benchmark's loop of runs ends). The handler is
installed only in the main thread, for the run's duration, and replaces Ray's own (which kills
Ray's processes mid-round and exits with status 1). Ctrl-C (SIGINT) keeps Python's behaviour:
KeyboardInterrupt at once, with the same cleanup.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Self

#: set by the first SIGTERM a run received: this process is to end
_terminating: list[int] = []


class Interrupted(KeyboardInterrupt):
    """The run stops at once (a second SIGTERM). ``signum`` is the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalStop:
    """While entered (in the main thread): the first SIGTERM sets :attr:`stop_requested` (the
    coordinator stops after the current round), a second one raises :class:`Interrupted`."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def stop_requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    @property
    def stop_reason(self) -> str:
        return f"{self.name} received" if self.signum is not None else ""

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        _terminating.append(signum)
        print(f"\ngcode: {self.name}: stopping after the current round (send it again to stop "
              f"at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> Self:
        if _terminating:
            raise Interrupted(_terminating[0])
        if threading.current_thread() is threading.main_thread():
            self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
        return self

    def reclaim(self) -> None:
        """Handle SIGTERM again after something replaced the handler (``ray.init``)."""
        for sig in self._previous:
            signal.signal(sig, self._handle)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()


__all__ = ["Interrupted", "SignalStop"]
