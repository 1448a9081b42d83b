"""Closed-form normalized loads (SCHEMES.md), used by the tuner without building codes.

They equal ``make_scheme(...).load`` for each gradient code (``tests/codes/test_codes.py``).
"""

from __future__ import annotations

from .gc import DEFAULT_GC_CODE
from .group import group_code_load
from .srsgc import srsgc_s


def uncoded_load(n: int) -> float:
    return 1.0 / n


def gc_load(n: int, s: int, gc_code: str = DEFAULT_GC_CODE) -> float:
    if gc_code == "group":
        return group_code_load(n, s)
    return (s + 1) / n if gc_code == "cyclic" else 1.0 / (n // (s + 1))


def srsgc_load(n: int, B: int, W: int, lam: int, gc_code: str = DEFAULT_GC_CODE) -> float:
    return gc_load(n, srsgc_s(B, W, lam), gc_code)


def msgc_load(n: int, B: int, W: int, lam: int, gc_code: str = DEFAULT_GC_CODE) -> float:
    if lam >= n:
        return (W - 1 + B) / (n * (W - 1))
    code_load = gc_load(n, lam, gc_code)
    return (W - 1 + B) * code_load / (n * (W - 1) * code_load + B)


def samples_per_job_for_exact_msgc(n: int, B: int, W: int, lam: int) -> int:
    """Smallest job size (samples) that splits into exact M-SGC chunks with the cyclic code."""
    return n * ((W - 1) * (lam + 1) + B) if lam < n else n * (W - 1)


