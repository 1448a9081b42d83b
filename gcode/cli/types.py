"""argparse ``type=`` converters shared by every gcode command, so that one flag is validated
the same way everywhere (``--time-scale -1`` and ``--load-slope nan`` are refused by simulate,
tune, bench and train alike) and nothing is coerced silently: Python's ``int("1_0")`` is 10 and
``float("nan")`` is a float, but neither is a sensible command-line value here."""

from __future__ import annotations

import argparse
import math
import re

_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _int(text: str) -> int:
    if not _INT.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}")
    return int(text)


def _float(text: str) -> float:
    if not _FLOAT.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def whole(text: str) -> int:
    """Any whole number (digits only, optional sign)."""
    return _int(text)


def count(text: str) -> int:
    """A whole number >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def number(text: str) -> float:
    """A finite number (no nan, inf, or digit separators)."""
    return _float(text)


def positive(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def nonnegative(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def scalar(text: str):
    """A KEY=VALUE value: true/false, a whole number, a finite number, else the text itself
    ('1_0' and 'nan' stay text, so the field they set reports them)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if _INT.fullmatch(text.strip()):
        return int(text)
    if _FLOAT.fullmatch(text.strip()):
        return float(text)
    return text


__all__ = ["count", "nonnegative", "number", "positive", "positive_int", "scalar", "whole"]
