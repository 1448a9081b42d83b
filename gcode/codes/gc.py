"""The two gradient codes: fractional repetition and cyclic repetition (Tandon et al., ICML
2017); the interface they implement is :class:`gcode.codes.gradient_code.GradientCode`."""

from __future__ import annotations

import itertools
import math
from functools import cached_property, lru_cache

import numpy as np

from .cyclic_solve import NullSpaceDecoder, band_product, banded_solve, build_band
from .gradient_code import DecodeError, GradientCode, mask_of

#: fp32 carries a relative rounding error of u = 2**-24 ≈ 6e-8 per message. A code whose
#: certified worst coefficient growth would turn that into more than this bound (half the 1e-6
#: that gcode promises) ships fp64 messages instead.
FP32_DECODE_ERROR_BUDGET = 5e-7
#: a cyclic code is certified by solving every decode set; with more sets than this it is not
#: certified, and sends fp64
CERTIFY_MAX_DECODE_SETS = 5000
#: a live run refuses a cyclic code whose sampled decode vectors miss Σ a_i·B_i = 1 by more
#: than this (half the 1e-6 gcode promises; message rounding may take the other half)
DECODE_VECTOR_ERROR_BUDGET = 5e-7
_RESIDUAL_TOLERANCE = 1e-10  # relative to the coefficient mass Σ|a_i|·max|B_i|
#: a null-space decode vector within this of 1 on every part needs no refinement (its basis
#: loses accuracy on ill-conditioned codes: then it is refined, or the banded LU solves that set)
_NULL_SPACE_RESIDUAL = 1e-11


class FractionalRepetitionCode(GradientCode):
    """Workers form ⌊n/(s+1)⌋ groups of at least s+1; each group owns an equal share of the data.

    Every member of a group computes the same sum over its group's part, so any one finished
    member per group decodes exactly with coefficient 1 (no linear solve, no conditioning issue).
    When (s+1) does not divide n the first n mod (s+1) groups get one extra member, and the load
    is 1/⌊n/(s+1)⌋, slightly above (s+1)/n. Groups are consecutive workers; decoding uses the
    first finished member of each.
    """

    kind = "fr"

    def __init__(self, n: int, s: int):
        super().__init__(n, s)
        num_groups = self.n // (self.s + 1)
        sizes = np.full(num_groups, self.n // num_groups)
        sizes[: self.n % num_groups] += 1  # as np.array_split
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.group_of = np.repeat(np.arange(num_groups), sizes)
        self._ones = np.ones(1)

    @property
    def groups(self) -> list[np.ndarray]:
        """The members of each group."""
        return np.split(np.arange(self.n), self.group_starts[1:])

    @cached_property
    def encoding(self) -> np.ndarray:
        enc = np.zeros((self.n, self.num_parts))
        enc[np.arange(self.n), self.group_of] = 1.0
        enc.flags.writeable = False
        return enc

    @property
    def num_parts(self) -> int:
        return len(self.group_starts)

    @property
    def part_fractions(self) -> np.ndarray:
        return np.full(self.num_parts, 1.0 / self.num_parts)

    @property
    def load(self) -> float:
        return float(1.0 / self.num_parts)

    def row(self, worker):
        return self.group_of[worker: worker + 1], self._ones

    def support_sums(self, part_values):
        return np.asarray(part_values)[self.group_of]

    def decodable(self, arrived):
        return bool(np.logical_or.reduceat(arrived, self.group_starts).all())

    def decode_vector(self, arrived):
        covered = np.logical_or.reduceat(arrived, self.group_starts)
        if not covered.all():
            g = int(np.argmin(covered))
            raise DecodeError(f"FR group {g} (workers {self.groups[g].tolist()}) has no finished member")
        workers = np.flatnonzero(arrived)
        groups = self.group_of[workers]
        first = np.ones(len(workers), dtype=bool)
        first[1:] = groups[1:] != groups[:-1]
        return workers[first], np.ones(self.num_parts)


class CyclicRepetitionCode(GradientCode):
    """Tandon's cyclic repetition code: worker i holds parts i … i+s (mod n), n parts of 1/n.

    H (s × n, H·1 = 0) is drawn from a fixed seed, so every process builds the same code; an
    explicit ``encoding`` (for example Tandon's published examples) may be passed instead.
    B[i, i] = 1 and B[i, S] = −H[:, S]⁻¹ H[:, i] for S = {i+1 … i+s}. Decoding solves
    aᵀ B_I = 1ᵀ on the first n−s finished workers I in float64 and checks the residual: by QR
    for n ≤ ``DENSE_DECODE_MAX_N`` or an explicit encoding; otherwise by one s × s solve against
    a basis of B's left null space refined to the banded LU's accuracy, O(s³ + n·s) per decode
    set after an O(n·s²) setup, with the banded LU (O(n·s²)) when refinement does not settle
    (:mod:`gcode.codes.cyclic_solve`).
    Decode vectors are cached per decode set. The rows of B are solved only when first needed
    (a task, a decode or the dense encoding).

    A generated code decodes from any n−s workers (Tandon et al.), so ``decodable`` counts.
    Conditioning is certified at construction. A decode uses the first n−s finished workers, so
    the decode sets are exactly the C(n, s) sets of n−s workers; when there are at most
    ``CERTIFY_MAX_DECODE_SETS`` of them, every one is solved (an explicit encoding that fails
    one is refused) and ``coefficient_growth`` is the worst case. Rounding each fp32 message
    f_i = Σ_j B_ij g_j moves the decoded sum by at most (u/2)·Σ_i |a_i|·Σ_j |B_ij|·max_j ‖g_j‖,
    that is (u/2)·growth·‖Σ_j g_j‖ for independent partial gradients of equal size
    (‖Σ_j g_j‖ ≈ √n·‖g_j‖). Messages are fp32 only when that is within
    ``FP32_DECODE_ERROR_BUDGET``; a code that is worse, or too large to certify (growth = inf),
    sends fp64.
    """

    kind = "cyclic"
    DENSE_DECODE_MAX_N = 64  # the QR costs O(n³) per decode set: 6 ms at n = 256

    def __init__(self, n: int, s: int, seed: int = 0, encoding: np.ndarray | None = None):
        super().__init__(n, s)
        self.seed = seed
        self._dense: np.ndarray | None = None
        self._band: np.ndarray | None = None  # (n, s+1): B[i, (i+k) mod n] = band[i, k]
        self._row_max: np.ndarray | None = None  # (n,) max |band[i]|
        self._row_mass: np.ndarray | None = None  # (n,) Σ |band[i]|, with the null space
        self._null_space: NullSpaceDecoder | None = None
        if encoding is not None:
            if np.shape(encoding) != (self.n, self.n):
                raise ValueError(f"encoding must have shape ({n}, {n}), got {np.shape(encoding)}")
            self._dense = np.array(encoding, dtype=np.float64)
            self._dense.flags.writeable = False
        self.explicit = encoding is not None
        self._decode_cached = lru_cache(maxsize=4096)(self._solve_first)
        self.coefficient_growth = self._certify_growth()

    # ---- structure -------------------------------------------------------------------------
    @property
    def band(self) -> np.ndarray:
        """(n, s+1) read-only: band[i, k] = B[i, (i+k) mod n] (a generated code only)."""
        if self._band is None:
            self._band = build_band(self.n, self.s, self.seed)
            self._band.flags.writeable = False
            self._band_has_zero = bool((self._band == 0.0).any())
            self._offsets = np.arange(self.s + 1)
        return self._band

    @property
    def encoding(self) -> np.ndarray:
        if self._dense is None:
            enc = np.zeros((self.n, self.n))
            cols = (np.arange(self.n)[:, None] + np.arange(self.s + 1)) % self.n
            enc[np.arange(self.n)[:, None], cols] = self.band
            enc.flags.writeable = False
            self._dense = enc
        return self._dense

    @property
    def num_parts(self) -> int:
        return self.n

    @property
    def part_fractions(self) -> np.ndarray:
        return np.full(self.n, 1.0 / self.n)

    @property
    def load(self) -> float:
        if self.explicit:
            return float(max(self.part_fractions[self.support(i)].sum() for i in range(self.n)))
        return float(np.full(self.s + 1, 1.0 / self.n).sum())  # every row reads s+1 parts

    def row(self, worker):
        if self.explicit:
            parts = np.flatnonzero(self._dense[worker])
            return parts, self._dense[worker, parts]
        band, n, start = self.band, self.n, int(worker)
        wrap = start + self.s + 1 - n  # parts past n − 1 wrap to 0 … wrap−1, which sort first
        if wrap <= 0:
            parts, coefficients = self._offsets + start, band[start]
        else:
            parts = np.concatenate([self._offsets[:wrap], self._offsets[:n - start] + start])
            coefficients = np.concatenate([band[start, n - start:], band[start, :n - start]])
        if self._band_has_zero:
            keep = coefficients != 0.0
            return parts[keep], coefficients[keep]
        return parts, coefficients

    def support_sums(self, part_values):
        if self.explicit:
            return (self._dense != 0) @ np.asarray(part_values, dtype=np.float64)
        values = np.asarray(part_values)
        wrapped = np.concatenate([[0], np.cumsum(np.concatenate([values, values[: self.s]]))])
        return wrapped[self.s + 1:] - wrapped[: self.n]

    @property
    def message_dtype(self) -> np.dtype:
        fp32_error = self.coefficient_growth * np.finfo(np.float32).eps / 2
        return np.dtype(np.float32 if fp32_error <= FP32_DECODE_ERROR_BUDGET else np.float64)

    def sampled_decode_error(self, sets: int = 64, seed: int = 0) -> float:
        """max over ``sets`` random straggler sets of s workers of max_j |Σ_i a_i·B_ij − 1|: how
        far the decode vectors themselves are from decoding the exact sum (0 for a certified
        code: every set was solved). A sample, not a proof; it exposes the ill-conditioned codes
        of large n (64 sets: 1e-8 at n = 256, s = 15; 1.3e-6 at n = 512, s = 30)."""
        if self.coefficient_growth < math.inf:
            return 0.0
        rng = np.random.default_rng([seed, self.n, self.s])
        worst = 0.0
        for _ in range(sets):
            arrived = np.ones(self.n, dtype=bool)
            arrived[rng.choice(self.n, self.s, replace=False)] = False
            workers, a = self.decode_vector(arrived)
            full = np.zeros(self.n)
            full[workers] = a
            total = full @ self.encoding if self.explicit else band_product(self.band, full)
            worst = max(worst, float(np.abs(total - 1.0).max()))
        return worst

    # ---- decoding ----------------------------------------------------------------------------
    def decodable(self, arrived):
        return int(np.count_nonzero(arrived)) >= self.n - self.s

    def decode_vector(self, arrived):
        workers = np.flatnonzero(arrived)[: self.n - self.s]
        if len(workers) < self.n - self.s:
            raise DecodeError(f"cyclic code needs {self.n - self.s} finished workers, got {len(workers)}")
        coefficients = self._decode_cached(workers.tobytes())
        keep = coefficients != 0.0
        return workers[keep], coefficients[keep]

    def _solve_first(self, key: bytes) -> np.ndarray:
        workers = np.frombuffer(key, dtype=np.int64)
        if self.explicit or self.n <= self.DENSE_DECODE_MAX_N:
            a = self._solve_dense(workers)
        else:
            try:
                a = self._solve_null_space(workers)
            except DecodeError:  # refinement did not settle: the banded LU decides
                a = self._solve_band(workers)
        a.flags.writeable = False
        return a

    def _check_residual(self, workers, a, product: np.ndarray, row_max: np.ndarray) -> None:
        residual = np.abs(product - 1.0).max()
        scale = max(1.0, float(np.abs(a) @ row_max))
        if not residual <= _RESIDUAL_TOLERANCE * scale:
            raise DecodeError(f"cyclic code: finished set does not span 1 (residual {residual:.2e})")

    def _solve_dense(self, workers: np.ndarray) -> np.ndarray:
        """aᵀ B_I = 1ᵀ by QR of B_Iᵀ (B_I has rank n−s)."""
        sub = self.encoding[workers]
        q, r = np.linalg.qr(np.ascontiguousarray(sub.T))
        try:
            a = np.linalg.solve(r, q.T @ np.ones(self.n))
        except np.linalg.LinAlgError as exc:
            raise DecodeError(f"cyclic code: singular decode system for workers {workers.tolist()}") from exc
        self._check_residual(workers, a, a @ sub, np.abs(sub).max(axis=1))
        return a

    def _solve_band(self, workers: np.ndarray) -> np.ndarray:
        """The banded LU on parts s … n−1 (:func:`banded_solve`), O(n·s²), then the residual
        over all n parts."""
        try:
            a = banded_solve(self.band, workers, np.ones(len(workers)))
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise DecodeError(f"cyclic code: singular decode system for {len(workers)} workers") from exc
        return self._checked(workers, a)

    def _solve_null_space(self, workers: np.ndarray) -> np.ndarray:
        """One s × s solve against a basis of B's left null space, refined by I₀'s banded LU
        (:class:`NullSpaceDecoder`, built on first use), O(s³ + n·s). Kept when Σ a_i·B_i is
        within ``_NULL_SPACE_RESIDUAL`` of 1, or when refinement settled within the rounding
        error that fp64 messages carry anyway, u·Σ_i |a_i|·Σ_j |B_ij|; otherwise DecodeError."""
        if self.s == 0:
            return self._solve_band(workers)
        if self._null_space is None:
            self._null_space = NullSpaceDecoder(self.band)
            self._row_mass = np.abs(self.band).sum(axis=1)
        try:
            a, product, settled = self._null_space.solve(workers, _NULL_SPACE_RESIDUAL)
        except np.linalg.LinAlgError as exc:
            raise DecodeError("cyclic code: singular null-space system") from exc
        residual = np.abs(product - 1.0).max()
        floor = np.finfo(np.float64).eps * float(np.abs(a) @ self._row_mass)
        if not (residual <= _NULL_SPACE_RESIDUAL or (settled and residual <= floor)):
            raise DecodeError(f"cyclic code: null-space residual {residual:.1e} above {floor:.1e}")
        a = a[workers]
        self._check_residual(workers, a, product, self._worker_row_max()[workers])
        return a

    def _worker_row_max(self) -> np.ndarray:
        """(n,) max |B_ij| per worker."""
        if self._row_max is None:
            self._row_max = np.abs(self.band).max(axis=1)
        return self._row_max

    def _checked(self, workers: np.ndarray, a: np.ndarray) -> np.ndarray:
        """``a`` (per worker of ``workers``) once Σ a_i·B_i = 1ᵀ holds on every part."""
        full = np.zeros(self.n)
        full[workers] = a
        self._check_residual(workers, a, band_product(self.band, full), self._worker_row_max()[workers])
        return a

    def _certify_growth(self) -> float:
        """max over every decode set I of Σ_{i∈I} |a_i|·Σ_j |B_ij| / √n; inf when not certified."""
        if self.s == 0:
            return float(np.abs(self.encoding).sum(axis=1).max() / np.sqrt(self.n))
        if math.comb(self.n, self.s) > CERTIFY_MAX_DECODE_SETS:
            return math.inf
        row_mass = np.abs(self.encoding).sum(axis=1)
        growth = 0.0
        for workers in itertools.combinations(range(self.n), self.n - self.s):
            try:
                workers, a = self.decode_vector(mask_of(self.n, workers))
            except DecodeError as exc:
                raise ValueError(f"encoding does not tolerate s={self.s} stragglers: {exc}") from None
            growth = max(growth, sum(abs(c) * row_mass[w] for w, c in zip(workers.tolist(), a.tolist())))
        return growth / math.sqrt(self.n)


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
