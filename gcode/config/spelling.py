"""How an error message tells the user to change a setting, in the words of the front end they
use: ``--checkpoint-resume DIR`` on the command line, ``CheckpointConfig(resume='DIR')`` in
Python, ``checkpoint.resume = 'DIR'`` in a config file. The front end in use is a context
variable that ``gcode.fit`` and the command line set while they run.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any

FRONTS = ("cli", "python", "file")
_FRONT: ContextVar[str | None] = ContextVar("gcode_config_front", default=None)


@contextlib.contextmanager
def speaking(front: str):
    """Messages built inside speak ``front``'s words, unless an outer front end already set
    them (``gcode train`` runs ``gcode.fit``: its messages stay in flags)."""
    if front not in FRONTS:
        raise ValueError(f"front must be one of {', '.join(FRONTS)}, got {front!r}")
    token = _FRONT.set(front) if _FRONT.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _FRONT.reset(token)


def front() -> str:
    return _FRONT.get() or "file"


def how_to_set(file_key: str, value: Any = None, *, placeholder: str | None = None) -> str:
    """How to set the setting at ``file_key`` to ``value`` (or to a ``placeholder`` such as
    ``SECONDS``) in the current front end."""
    from .registry import BY_FILE
    s = BY_FILE[file_key]
    shown = {"cli": placeholder or ("" if value is None else str(value)),
             "python": placeholder or repr(value), "file": placeholder or repr(value)}[front()]
    if front() == "cli":
        return f"{s.flag} {shown}".rstrip() if s.kind is not bool else s.flag
    if front() == "python":
        owner, _, name = s.api.rpartition(".")
        if owner == "run.tags":
            return f"RunConfig(tags={{{name!r}: {shown}}})"
        return f"{s.owner.__name__}({name}={shown})"
    return f"{file_key} = {shown}"


__all__ = ["FRONTS", "front", "how_to_set", "speaking"]
