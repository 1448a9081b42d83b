"""Per-round JSONL run log: one JSON object per line, flushed every round."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def to_json(value: Any) -> str:
    """JSON with numpy values converted and non-finite floats as null."""
    return json.dumps(_plain(value), allow_nan=False)


class JsonlWriter:
    """Append-only JSONL writer (``None`` path: a no-op).

    ``resume_round``: continue an existing log of a resumed run: its records of rounds before
    ``resume_round`` are kept, later ones (written after the checkpoint, before the interruption)
    are dropped, since the resumed run writes those rounds again."""

    def __init__(self, path: str | os.PathLike | None, resume_round: int | None = None):
        self.path = None if path is None else Path(path)
        self._f = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kept: list[str] = []
            if resume_round is not None and self.path.exists():
                with open(self.path, encoding="utf-8") as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                        except (ValueError, RecursionError):  # torn by the interruption
                            continue
                        if isinstance(rec, dict) and isinstance(rec.get("round"), int) \
                                and rec["round"] < resume_round:
                            kept.append(line if line.endswith("\n") else line + "\n")
            from ...paths import FileInUse, UnsafeOutput, open_exclusive
            try:  # one writer per log: a second run on the same path must not clobber it
                self._f = open_exclusive(self.path, "w")
            except (FileInUse, UnsafeOutput) as exc:
                from ...config import ConfigError
                raise ConfigError("log.jsonl", str(exc)) from None
            if kept:
                self._f.writelines(kept)
                self._f.flush()

    def write(self, record: dict) -> None:
        if self._f is not None:
            try:
                self._f.write(to_json(record) + "\n")
                self._f.flush()
            except OSError as exc:  # e.g. the disk filled: one line, not a traceback
                from ..errors import RunFailed
                raise RunFailed(f"log.jsonl {self.path}: cannot write: {exc.strerror or exc}; "
                                f"the records written before are intact") from None

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except OSError:  # a write that already failed (and was reported) cannot be flushed
                pass
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
