"""Strings that came from outside gcode, made safe to print on a terminal.

A stop reason sent to the monitor, a run id or scheme name read from a run log, a file name, a
worker's error message, a config string echoed back: any of them may hold escape sequences
(``ESC ] 2 ; ... BEL`` retitles the terminal, ``ESC [ 2 J`` clears it, a bidi override reorders
what follows). Every place that prints such a string prints :func:`escape` (one line) or
:func:`escape_lines` (a block) of it: each non-printable character becomes its Python escape
(``\\x1b``, ``\\u202e``, ``\\n``), everything printable stays as it is.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: object) -> str:
    """``str(text)`` on one line with every non-printable character (newlines included)
    written as its escape."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else _escape_char(c) for c in s)


def escape_lines(text: object) -> str:
    """:func:`escape` of each line of ``text``; the line breaks themselves are kept."""
    return "\n".join(escape(line) for line in str(text).split("\n"))


def one_line(exc: BaseException) -> str:
    """An exception's message as one escaped line (runs of whitespace become one space)."""
    return escape(" ".join(str(exc).split()))


__all__ = ["escape", "escape_lines", "one_line"]
