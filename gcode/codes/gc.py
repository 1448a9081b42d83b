"""Gradient codes (Tandon et al., ICML 2017): fractional repetition and cyclic repetition.

A gradient code splits one job's data into ``num_parts`` parts with gradients g_1 … g_k and has
worker i send f_i = Σ_j encoding[i, j] · g_j. It tolerates ``s`` stragglers: for every set of
at least n − s finished workers there are decode coefficients a with aᵀ·encoding_I = 1ᵀ, so
Σ_i a_i f_i = Σ_j g_j exactly.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from functools import lru_cache

import numpy as np

#: fp32 carries a relative rounding error of u = 2**-24 ≈ 6e-8 per message. A code whose
#: certified worst coefficient growth would turn that into more than this bound (half the 1e-6
#: that gcode promises) ships fp64 messages instead.
FP32_DECODE_ERROR_BUDGET = 5e-7
#: a cyclic code is certified by solving every decode set; with more sets than this it is not
#: certified, and sends fp64
CERTIFY_MAX_DECODE_SETS = 5000
_RESIDUAL_TOLERANCE = 1e-10  # relative to the coefficient mass Σ|a_i|·max|B_i|


class DecodeError(RuntimeError):
    """Raised when the finished workers do not determine the full gradient."""


class GradientCode(ABC):
    """An (n, s) gradient code. ``encoding`` has shape (n, num_parts) and is float64."""

    kind: str

    def __init__(self, n: int, s: int):
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got n={n!r}")
        if not isinstance(s, (int, np.integer)) or not 0 <= s < n:
            raise ValueError(f"s must satisfy 0 <= s < n, got s={s!r}, n={n}")
        self.n = int(n)
        self.s = int(s)

    @property
    @abstractmethod
    def encoding(self) -> np.ndarray:
        """(n, num_parts) float64 coefficient matrix."""

    @property
    @abstractmethod
    def part_fractions(self) -> np.ndarray:
        """(num_parts,) fraction of the coded data held by each part; sums to 1."""

    @property
    def num_parts(self) -> int:
        return self.encoding.shape[1]

    def support(self, worker: int) -> np.ndarray:
        """Indices of the parts that ``worker`` touches."""
        return np.flatnonzero(self.encoding[worker])

    @property
    def load(self) -> float:
        """Largest fraction of the coded data that one worker processes."""
        return float(max(self.part_fractions[self.support(i)].sum() for i in range(self.n)))

    @property
    def message_dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def can_decode(self, finished: frozenset[int]) -> bool:
        try:
            self.decode_coefficients(frozenset(finished))
        except DecodeError:
            return False
        return True

    def decode_coefficients(self, finished: frozenset[int]) -> dict[int, float]:
        """Coefficients a over ``finished`` workers with Σ a_i encoding[i] = 1ᵀ (cached per set)."""
        return dict(self._decode_cached(frozenset(int(w) for w in finished)))

    @lru_cache(maxsize=4096)
    def _decode_cached(self, finished: frozenset[int]) -> tuple[tuple[int, float], ...]:
        return tuple(sorted(self._solve(finished).items()))

    @abstractmethod
    def _solve(self, finished: frozenset[int]) -> dict[int, float]:
        """Uncached decode; raises DecodeError when ``finished`` does not suffice."""


class FractionalRepetitionCode(GradientCode):
    """Workers form ⌊n/(s+1)⌋ groups of at least s+1; each group owns an equal share of the data.

    Every member of a group computes the same sum over its group's part, so any one finished
    member per group decodes exactly with coefficient 1 (no linear solve, no conditioning issue).
    When (s+1) does not divide n the first n mod (s+1) groups get one extra member, and the load
    is 1/⌊n/(s+1)⌋, slightly above (s+1)/n.
    """

    kind = "fr"

    def __init__(self, n: int, s: int):
        super().__init__(n, s)
        num_groups = self.n // (self.s + 1)
        self.groups: list[np.ndarray] = [g for g in np.array_split(np.arange(self.n), num_groups)]
        self.group_of = np.empty(self.n, dtype=np.int64)
        for g, members in enumerate(self.groups):
            self.group_of[members] = g
        enc = np.zeros((self.n, num_groups))
        enc[np.arange(self.n), self.group_of] = 1.0
        self._encoding = enc
        enc.flags.writeable = False

    @property
    def encoding(self) -> np.ndarray:
        return self._encoding

    @property
    def part_fractions(self) -> np.ndarray:
        return np.full(len(self.groups), 1.0 / len(self.groups))

    def _solve(self, finished: frozenset[int]) -> dict[int, float]:
        coefficients = {}
        for g, members in enumerate(self.groups):
            present = [int(w) for w in members if int(w) in finished]
            if not present:
                raise DecodeError(f"FR group {g} (workers {members.tolist()}) has no finished member")
            coefficients[present[0]] = 1.0
        return coefficients


class CyclicRepetitionCode(GradientCode):
    """Tandon's cyclic repetition code: worker i holds parts i … i+s (mod n), n parts of 1/n.

    H (s × n, H·1 = 0) is drawn from a fixed seed, so every process builds the same code; an
    explicit ``encoding`` (for example Tandon's published examples) may be passed instead.
    B[i, i] = 1 and B[i, S] = −H[:, S]⁻¹ H[:, i] for S = {i+1 … i+s}. Decoding solves
    aᵀ B_I = 1ᵀ by least squares in float64 and checks the residual.

    Conditioning is certified at construction. A decode uses the first n−s finished workers, so
    the decode sets are exactly the C(n, s) sets of n−s workers; when there are at most
    ``CERTIFY_MAX_DECODE_SETS`` of them, every one is solved and ``coefficient_growth`` is the
    worst case. Rounding each fp32 message f_i = Σ_j B_ij g_j moves the decoded sum by at most
    (u/2)·Σ_i |a_i|·Σ_j |B_ij|·max_j ‖g_j‖, that is (u/2)·growth·‖Σ_j g_j‖ for independent
    partial gradients of equal size (‖Σ_j g_j‖ ≈ √n·‖g_j‖). Messages are fp32 only when that is
    within ``FP32_DECODE_ERROR_BUDGET``; a code that is worse, or too large to certify
    (growth = inf), sends fp64.
    """

    kind = "cyclic"

    def __init__(self, n: int, s: int, seed: int = 0, encoding: np.ndarray | None = None):
        super().__init__(n, s)
        self.seed = seed
        if encoding is None:
            encoding = self._build(self.n, self.s, seed)
        elif np.shape(encoding) != (self.n, self.n):
            raise ValueError(f"encoding must have shape ({n}, {n}), got {np.shape(encoding)}")
        self._encoding = np.array(encoding, dtype=np.float64)
        self._encoding.flags.writeable = False
        self.coefficient_growth = self._certify_growth()

    @staticmethod
    def _build(n: int, s: int, seed: int) -> np.ndarray:
        enc = np.zeros((n, n))
        if s == 0:
            np.fill_diagonal(enc, 1.0)
            return enc
        rng = np.random.default_rng(seed)
        h = rng.standard_normal((s, n))
        h[:, -1] = -h[:, :-1].sum(axis=1)  # H·1 = 0
        for i in range(n):
            support = [(i + k) % n for k in range(1, s + 1)]
            enc[i, i] = 1.0
            enc[i, support] = -np.linalg.solve(h[:, support], h[:, i])
        return enc

    def _certify_growth(self) -> float:
        """max over every decode set I of Σ_{i∈I} |a_i|·Σ_j |B_ij| / √n; inf when not certified."""
        if self.s == 0:
            return float(np.abs(self._encoding).sum(axis=1).max() / np.sqrt(self.n))
        if math.comb(self.n, self.s) > CERTIFY_MAX_DECODE_SETS:
            return math.inf
        row_mass = np.abs(self._encoding).sum(axis=1)
        growth = 0.0
        for workers in itertools.combinations(range(self.n), self.n - self.s):
            try:
                a = self._solve(frozenset(workers))
            except DecodeError as exc:
                raise ValueError(f"encoding does not tolerate s={self.s} stragglers: {exc}") from None
            growth = max(growth, sum(abs(c) * row_mass[w] for w, c in a.items()))
        return growth / math.sqrt(self.n)

    @property
    def encoding(self) -> np.ndarray:
        return self._encoding

    @property
    def part_fractions(self) -> np.ndarray:
        return np.full(self.n, 1.0 / self.n)

    @property
    def message_dtype(self) -> np.dtype:
        fp32_error = self.coefficient_growth * np.finfo(np.float32).eps / 2
        return np.dtype(np.float32 if fp32_error <= FP32_DECODE_ERROR_BUDGET else np.float64)

    def _solve(self, finished: frozenset[int]) -> dict[int, float]:
        """Solve aᵀ B_I = 1ᵀ on the first n−s finished workers (B has rank n−s) by QR."""
        workers = sorted(finished)[: self.n - self.s]
        if len(workers) < self.n - self.s:
            raise DecodeError(f"cyclic code needs {self.n - self.s} finished workers, got {len(workers)}")
        sub = self._encoding[workers]
        q, r = np.linalg.qr(np.ascontiguousarray(sub.T))
        try:
            a = np.linalg.solve(r, q.T @ np.ones(self.n))
        except np.linalg.LinAlgError as exc:
            raise DecodeError(f"cyclic code: singular decode system for workers {workers}") from exc
        residual = np.abs(a @ sub - 1.0).max()
        scale = max(1.0, float(np.abs(a) @ np.abs(sub).max(axis=1)))
        if not residual <= _RESIDUAL_TOLERANCE * scale:
            raise DecodeError(f"cyclic code: finished set does not span 1 (residual {residual:.2e})")
        return {w: float(c) for w, c in zip(workers, a) if c != 0.0}


GC_CODE_KINDS = ("cyclic", "fr")


@lru_cache(maxsize=256)
def make_gc_code(kind: str, n: int, s: int) -> GradientCode:
    """The (n, s) gradient code of ``kind`` ('cyclic' or 'fr'). Codes are immutable and
    deterministic, so one instance (with its decode cache) is shared per (kind, n, s)."""
    if kind == "fr":
        return FractionalRepetitionCode(n, s)
    if kind == "cyclic":
        return CyclicRepetitionCode(n, s)
    raise ValueError(f"gc_code must be one of {GC_CODE_KINDS}, got {kind!r}")
