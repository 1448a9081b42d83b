"""Field checks shared by the delay-model configs; each raises ValueError naming the field."""

from __future__ import annotations

import math

import numpy as np


def require_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as int; it must be an integer (not bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {name}={value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value}")
    return int(value)


def require_real(name: str, value: object) -> float:
    """Return ``value`` as float; it must be a finite real number (not bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {name}={value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value}")
    return float(value)


def require_positive(name: str, value: object) -> float:
    """A finite real number > 0."""
    if require_real(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {name}={value}")
    return float(value)


def require_nonnegative(name: str, value: object) -> float:
    """A finite real number >= 0."""
    if require_real(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {name}={value}")
    return float(value)


def require_probability(name: str, value: object) -> float:
    """A real number in [0, 1]."""
    if not 0 <= require_real(name, value) <= 1:
        raise ValueError(f"{name} must lie in [0, 1], got {name}={value}")
    return float(value)
