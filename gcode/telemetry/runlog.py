"""The run log: length-delimited protobuf (``<prefix>.pb``) plus JSONL for humans (``<prefix>.jsonl``).

Format of ``.pb``: the 16-byte magic ``b"gcode.v1.RunLog\\n"``, then a sequence of
``varint(len) || LogEntry`` (gcode.v1.LogEntry, see proto/gcode/v1/run.proto): one RunConfig,
then RoundRecords in increasing round order, then at most one RunSummary. A log without a
summary is from a run that did not finish (crashed, killed, or still running).

Crash safety: each entry goes out in one ``write`` followed by a flush, so a crash leaves every
earlier entry intact and at most one partial entry at the end; ``read_run_log`` reports that
tail as truncation (or skips it with ``allow_truncated=True``). ``fsync=True`` additionally
syncs after every entry, for machine crashes.

``.jsonl`` holds the same entries, one proto3-JSON object per line (``{"config": {...}}``,
``{"round": {...}}``, ``{"summary": {...}}``) with the .proto field names. Neither format is
ever unpickled: reading parses protobuf or JSON, nothing else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from ..paths import FileInUse, UnsafeOutput, open_exclusive
from .messages import LogEntry, RoundRecord, RunConfig, RunSummary, entry_to_dict

MAGIC = b"gcode.v1.RunLog\n"
PB_SUFFIX = ".pb"
JSONL_SUFFIX = ".jsonl"
#: an entry larger than this is treated as garbage (a 256-worker round is well under 1 MiB)
MAX_ENTRY_BYTES = 256 << 20


class RunLogError(ValueError):
    """A run log is missing, truncated, garbled or out of order; the message says where."""


class RunLog(NamedTuple):
    config: RunConfig
    rounds: list[RoundRecord]
    summary: RunSummary | None


# ---- varints -------------------------------------------------------------------------------
def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint must be >= 0")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _decode_varint(buf: bytes, pos: int) -> tuple[int | None, int]:
    """(value, next position), or (None, pos) when the buffer ends inside the varint."""
    result, shift = 0, 0
    while pos < len(buf):
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise RunLogError("varint longer than 10 bytes")
    return None, pos


# ---- writing -------------------------------------------------------------------------------
class RunLogWriter:
    """Writes ``<prefix>.pb`` and (unless ``jsonl=False``) ``<prefix>.jsonl``.

    Call :meth:`write_config` once, :meth:`write_round` per round, :meth:`write_summary` once at
    the end (which also closes). Used as a context manager it closes on exit; an exception
    leaves a log without a summary, which readers treat as an unfinished run.
    """

    def __init__(self, path_prefix: str | os.PathLike, config: RunConfig | None = None, *,
                 jsonl: bool = True, fsync: bool = False):
        prefix = Path(path_prefix)
        if prefix.suffix in (PB_SUFFIX, JSONL_SUFFIX):
            prefix = prefix.with_suffix("")
        self.pb_path = prefix.with_name(prefix.name + PB_SUFFIX)
        self.jsonl_path = prefix.with_name(prefix.name + JSONL_SUFFIX) if jsonl else None
        self._fsync = fsync
        self._pb: BinaryIO | None = None
        self._jsonl = None
        try:
            prefix.parent.mkdir(parents=True, exist_ok=True)
            self._pb = open_exclusive(self.pb_path, "wb")  # one writer per log, never clobbered
            self._jsonl = open_exclusive(self.jsonl_path, "w") if jsonl else None
            self._pb.write(MAGIC)
            self._pb.flush()
        except (FileInUse, UnsafeOutput) as exc:
            self.close()
            raise RunLogError(f"run log {exc}") from None
        except OSError as exc:
            self.close()
            raise RunLogError(f"run log {exc.filename or self.pb_path}: cannot write: "
                              f"{exc.strerror or exc}") from None
        self._state = "config"  # config -> rounds -> closed
        self._last_round: int | None = None
        if config is not None:
            self.write_config(config)

    @property
    def closed(self) -> bool:
        return self._pb is None

    def _write(self, entry: LogEntry) -> None:
        if self._pb is None:
            raise ValueError(f"run log {self.pb_path} is closed")
        payload = entry.SerializeToString()
        path = self.pb_path
        try:
            self._pb.write(encode_varint(len(payload)) + payload)
            self._pb.flush()
            if self._jsonl is not None:
                path = self.jsonl_path
                self._jsonl.write(json.dumps(entry_to_dict(entry), allow_nan=False) + "\n")
                self._jsonl.flush()
            if self._fsync:
                os.fsync(self._pb.fileno())
                if self._jsonl is not None:
                    os.fsync(self._jsonl.fileno())
        except OSError as exc:
            raise RunLogError(f"run log {path}: cannot write: {exc.strerror or exc}; the entries "
                              f"written before are intact (read them with --allow-truncated)"
                              ) from None

    def write_config(self, config: RunConfig) -> None:
        if self._state != "config":
            raise ValueError("the RunConfig must be written once, before any round")
        self._write(LogEntry(config=config))
        self._state = "rounds"

    def write_round(self, record: RoundRecord) -> None:
        if self._state != "rounds":
            raise ValueError("write_round needs a RunConfig first and no summary yet")
        if self._last_round is not None and record.round <= self._last_round:
            raise ValueError(f"round {record.round} written after round {self._last_round}; "
                             "rounds must increase")
        self._write(LogEntry(round=record))
        self._last_round = record.round

    def write_summary(self, summary: RunSummary) -> None:
        if self._state != "rounds":
            raise ValueError("write_summary needs a RunConfig first and at most one summary")
        self._write(LogEntry(summary=summary))
        self._state = "done"
        self.close()

    def close(self) -> None:
        """Close both files; a write that fails on close (a full disk) is dropped, the entries
        flushed before it are on disk."""
        for f in (self._pb, self._jsonl):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self._pb = self._jsonl = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- reading -------------------------------------------------------------------------------
def resolve_log_path(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path.pb`` / ``path.jsonl`` when given a prefix."""
    p = Path(path)
    if p.is_file():
        return p
    for suffix in (PB_SUFFIX, JSONL_SUFFIX):
        candidate = p.with_name(p.name + suffix)
        if candidate.is_file():
            return candidate
    raise RunLogError(f"{path}: no such run log (also tried {p.name}{PB_SUFFIX} and "
                      f"{p.name}{JSONL_SUFFIX})")


def iter_pb_entries(path: str | os.PathLike, *, allow_truncated: bool = False) -> Iterator[LogEntry]:
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise RunLogError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise RunLogError(f"{name}: truncated inside the file header ({len(data)} bytes)")
        raise RunLogError(f"{name}: not a gcode run log (the first bytes are not "
                          f"{MAGIC!r}); JSONL logs must end in {JSONL_SUFFIX}")
    pos, index = len(MAGIC), 0
    while pos < len(data):
        start = pos
        try:
            length, pos = _decode_varint(data, pos)
        except RunLogError as exc:
            raise RunLogError(f"{name}: entry {index} at byte {start}: {exc} (garbage, not a "
                              f"length prefix)") from None
        if length is None or pos + length > len(data):
            if length is not None and length > MAX_ENTRY_BYTES:
                raise RunLogError(f"{name}: entry {index} at byte {start} claims {length} bytes: "
                                  "garbage, not a run log entry")
            if allow_truncated:
                return
            have = len(data) - start
            raise RunLogError(f"{name}: truncated: entry {index} at byte {start} is incomplete "
                              f"({have} of {'?' if length is None else length + pos - start} bytes);"
                              f" {index} complete entries precede it (a crashed run? read it "
                              "with allow_truncated / --allow-truncated)")
        entry = LogEntry()
        try:
            entry.ParseFromString(data[pos:pos + length])
        except DecodeError as exc:
            raise RunLogError(f"{name}: entry {index} at byte {start} is not a valid LogEntry "
                              f"({exc})") from None
        if entry.WhichOneof("entry") is None:
            raise RunLogError(f"{name}: entry {index} at byte {start} is empty or unknown")
        yield entry
        pos += length
        index += 1


def iter_jsonl_entries(path: str | os.PathLike, *, allow_truncated: bool = False) -> Iterator[LogEntry]:
    from ..limits import check_depth, decode_utf8
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise RunLogError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        lines = decode_utf8(raw, name).split("\n")
    except ValueError as exc:
        raise RunLogError(str(exc)) from None
    ends_cleanly = lines[-1] == ""
    if ends_cleanly:
        lines.pop()
    for lineno, line in enumerate(lines, start=1):
        last = lineno == len(lines)
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            check_depth(obj, "the entry")
            entry = json_format.ParseDict(obj, LogEntry())
        except RecursionError:
            raise RunLogError(f"{name}: line {lineno} is nested too deeply to be a run-log "
                              f"entry") from None
        except (ValueError, json_format.ParseError) as exc:
            if last and not ends_cleanly:
                if allow_truncated:
                    return
                raise RunLogError(f"{name}: truncated: line {lineno} is incomplete (a crashed "
                                  "run? read it with allow_truncated / --allow-truncated)") from None
            raise RunLogError(f"{name}: line {lineno} is not a run-log entry: {exc}") from None
        if entry.WhichOneof("entry") is None:
            raise RunLogError(f"{name}: line {lineno} holds no config, round or summary")
        yield entry


def read_run_log(path: str | os.PathLike, *, allow_truncated: bool = False) -> RunLog:
    """(RunConfig, [RoundRecord], RunSummary | None) from a ``.pb`` or ``.jsonl`` log or a prefix.

    Raises :class:`RunLogError` (a ValueError) naming the file and position for a missing,
    truncated, garbled or out-of-order log. ``allow_truncated=True`` drops an incomplete last
    entry (what a crash mid-write leaves) instead of raising.
    """
    p = resolve_log_path(path)
    entries = (iter_jsonl_entries if p.suffix == JSONL_SUFFIX else iter_pb_entries)(
        p, allow_truncated=allow_truncated)
    config, rounds, summary = None, [], None
    for i, entry in enumerate(entries):
        kind = entry.WhichOneof("entry")
        if i == 0:
            if kind != "config":
                raise RunLogError(f"{p}: the first entry is a {kind}, expected the RunConfig")
            config = entry.config
            continue
        if summary is not None:
            raise RunLogError(f"{p}: entry {i} ({kind}) follows the RunSummary")
        if kind == "config":
            raise RunLogError(f"{p}: entry {i} is a second RunConfig")
        if kind == "round":
            if len(entry.round.workers) != config.n:
                raise RunLogError(f"{p}: entry {i} (round {entry.round.round}) has "
                                  f"{len(entry.round.workers)} workers, but the RunConfig says "
                                  f"n={config.n}")
            if rounds and entry.round.round <= rounds[-1].round:
                raise RunLogError(f"{p}: entry {i} is round {entry.round.round} after round "
                                  f"{rounds[-1].round}")
            rounds.append(entry.round)
        else:
            summary = entry.summary
    if config is None:
        raise RunLogError(f"{p}: empty run log (no RunConfig)")
    return RunLog(config, rounds, summary)
