"""The gradient codes gcode offers and :func:`make_gc_code`, which builds them; the interface
they implement is :class:`gcode.codes.gradient_code.GradientCode`.

* ``group`` (the default, :mod:`gcode.codes.group`): FR's groups, coded inside so that the load
  reaches (s+1)/n; every decode certified at construction.
* ``fr``: fractional repetition, the group code with no coding inside a group; exact in fp32.
* ``cyclic`` (:mod:`gcode.codes.cyclic`): Tandon's cyclic repetition, the papers' code; certified
  at small n, checked per decode set beyond.
"""

from __future__ import annotations

from functools import lru_cache

from .cyclic import CERTIFY_MAX_DECODE_SETS, CyclicRepetitionCode
from .gradient_code import GradientCode
from .group import GroupCode


class FractionalRepetitionCode(GroupCode):
    """Workers form ⌊n/(s+1)⌋ groups of at least s+1; each group owns an equal share of the data.

    Every member of a group computes the same sum over its group's part, so any one finished
    member per group decodes exactly with coefficient 1 (no linear solve, no conditioning issue:
    amplification 1, exact in fp32). When (s+1) does not divide n the first n mod (s+1) groups
    get one extra member, and the load is 1/⌊n/(s+1)⌋, slightly above (s+1)/n. Groups are
    consecutive workers. It is the group code with no extra node in any group (ρ_max = 0).
    """

    kind = "fr"

    def __init__(self, n: int, s: int):
        super().__init__(n, s, rho_max=0)


__all__ = ["CERTIFY_MAX_DECODE_SETS", "DEFAULT_GC_CODE", "GC_CODE_KINDS", "CyclicRepetitionCode",
           "FractionalRepetitionCode", "GroupCode", "make_gc_code"]

GC_CODE_KINDS = ("group", "cyclic", "fr")
#: the code a scheme uses unless told otherwise
DEFAULT_GC_CODE = "group"


@lru_cache(maxsize=256)
def make_gc_code(kind: str, n: int, s: int) -> GradientCode:
    """The (n, s) gradient code of ``kind`` (one of ``GC_CODE_KINDS``). Codes are immutable and
    deterministic, so one instance (with its decode cache) is shared per (kind, n, s)."""
    if kind == "group":
        return GroupCode(n, s)
    if kind == "fr":
        return FractionalRepetitionCode(n, s)
    if kind == "cyclic":
        return CyclicRepetitionCode(n, s)
    raise ValueError(f"gc_code must be one of {GC_CODE_KINDS}, got {kind!r}")
