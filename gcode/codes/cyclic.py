"""Tandon's cyclic repetition code (ICML 2017), made safe: every decode is certified at
construction or checked as it happens (:mod:`gcode.codes.exactness`)."""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np

from .cyclic_solve import NullSpaceDecoder, band_product, banded_solve, build_band
from .exactness import DECODE_ERROR_BUDGET, cheapest_dtype, error_factor
from .gradient_code import DecodeError, GradientCode

#: a cyclic code is certified by solving every decode set; with more sets than this it is not,
#: and checks each decode set as it meets it
CERTIFY_MAX_DECODE_SETS = 5000
#: a null-space decode vector within this of 1 on every part needs no refinement (its basis
#: loses accuracy on ill-conditioned codes: then it is refined, or the banded LU solves that set)
_NULL_SPACE_RESIDUAL = 1e-11
_FP64 = np.dtype(np.float64)


class CyclicRepetitionCode(GradientCode):
    """Tandon's cyclic repetition code: worker i holds parts i … i+s (mod n), n parts of 1/n.

    H (s × n, H·1 = 0) is drawn from a fixed seed, so every process builds the same code; an
    explicit ``encoding`` (for example Tandon's published examples) may be passed instead.
    B[i, i] = 1 and B[i, S] = −H[:, S]⁻¹ H[:, i] for S = {i+1 … i+s}. Decoding solves
    aᵀ B_I = 1ᵀ on the first n−s finished workers I in float64: by QR for n ≤
    ``DENSE_DECODE_MAX_N`` or an explicit encoding; otherwise by one s × s solve against a basis
    of B's left null space refined to the banded LU's accuracy, O(s³ + n·s) per decode set after
    an O(n·s²) setup, with the banded LU (O(n·s²)) when refinement does not settle
    (:mod:`gcode.codes.cyclic_solve`). Decode vectors are cached per decode set. The rows of B
    are solved only when first needed.

    Exactness. A decode uses the first n−s finished workers, so the decode sets are the C(n, s)
    sets of n−s workers. When there are at most ``CERTIFY_MAX_DECODE_SETS`` of them every one is
    solved at construction: if every one has an error factor E = ‖r‖_∞ + ε·A within the budget
    in fp32 or fp64, the code is ``certified`` and sends the cheapest such dtype (an explicit
    encoding must certify, or is refused). Otherwise (the paper's codes at n = 256: a random H
    is ill-conditioned; 44 of 1,000 random sets at (512, 30) miss the budget, and a search finds
    such sets at (256, 27)) the code sends fp64 and checks each decode set as it meets it: a set whose E
    is over the budget is not decodable; once more than n−s workers finished, the least-norm decode
    vector over all of them is tried instead (``decode_uses_min_norm``). Such a code must decode within
    the budget from every worker, or it is refused at construction.
    """

    kind = "cyclic"
    DENSE_DECODE_MAX_N = 64  # the QR costs O(n³) per decode set: 6 ms at n = 256

    def __init__(self, n: int, s: int, seed: int = 0, encoding: np.ndarray | None = None):
        super().__init__(n, s)
        self.seed = seed
        self._dense: np.ndarray | None = None
        self._band: np.ndarray | None = None  # (n, s+1): B[i, (i+k) mod n] = band[i, k]
        self._row_mass: np.ndarray | None = None  # (n,) Σ |band[i]|, with the null space
        self._null_space: NullSpaceDecoder | None = None
        if encoding is not None:
            if np.shape(encoding) != (self.n, self.n):
                raise ValueError(f"encoding must have shape ({n}, {n}), got {np.shape(encoding)}")
            self._dense = np.array(encoding, dtype=np.float64)
            self._dense.flags.writeable = False
        self.explicit = encoding is not None
        self._first_cached = lru_cache(maxsize=4096)(self._solve_first)
        self._checked_cached = lru_cache(maxsize=4096)(self._checked_decode)
        self._dtype = _FP64  # until certification picks one
        self._certify()

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
        return self._dtype

    # ---- exactness ---------------------------------------------------------------------------
    def _certify(self) -> None:
        """Solve every decode set when there are few enough (class docstring); otherwise check
        that every worker together decodes within the budget."""
        self.residual = self.amplification = math.nan
        if math.comb(self.n, self.s) <= CERTIFY_MAX_DECODE_SETS:
            worst_r = worst_a = 0.0
            for workers in itertools.combinations(range(self.n), self.n - self.s):
                workers = np.array(workers, dtype=np.int64)
                try:
                    residual, amplification = self.decode_error(workers, self._solve(workers))
                except DecodeError as exc:
                    residual, amplification = math.inf, math.inf
                    if self.explicit:
                        raise ValueError(f"encoding does not tolerate s={self.s} stragglers: {exc}") from None
                worst_r, worst_a = max(worst_r, residual), max(worst_a, amplification)
            dtype = cheapest_dtype(worst_r, worst_a)
            self.residual, self.amplification = worst_r, worst_a
            if dtype is not None:
                self.certified, self._dtype = True, dtype
                self.error_bound = error_factor(worst_r, worst_a, dtype)
                return
            if self.explicit:
                raise ValueError(f"encoding does not tolerate s={self.s} stragglers within the decode "
                                 "error budget (worst error factor "
                                 f"{error_factor(worst_r, worst_a, _FP64):.1e} "
                                 f"> {DECODE_ERROR_BUDGET:.0e})")
        elif self.explicit:
            raise ValueError(f"an explicit encoding must be certified: n={self.n}, s={self.s} has "
                             f"more than {CERTIFY_MAX_DECODE_SETS} decode sets")
        self.certified, self._dtype, self.error_bound = False, _FP64, DECODE_ERROR_BUDGET
        if self._checked(np.ones(self.n, dtype=bool)) is None:
            raise ValueError(f"the cyclic code n={self.n}, s={self.s} cannot decode within the decode "
                             f"error budget {DECODE_ERROR_BUDGET:.0e} even from every worker; use "
                             f"gc_code='group' (certified) or 'fr'")

    def decode_error(self, workers: np.ndarray, a: np.ndarray) -> tuple[float, float]:
        if self.explicit or self.n <= self.DENSE_DECODE_MAX_N:
            return super().decode_error(workers, a)
        full = np.zeros(self.n)
        full[workers] = a
        residual = float(np.abs(band_product(self.band, full) - 1.0).max())
        return residual, float(band_product(np.abs(self.band), np.abs(full)).max())

    def _within_budget(self, workers: np.ndarray, a: np.ndarray) -> bool:
        return error_factor(*self.decode_error(workers, a), self._dtype) <= DECODE_ERROR_BUDGET

    # ---- decoding ----------------------------------------------------------------------------
    def decodable(self, arrived):
        if int(np.count_nonzero(arrived)) < self.n - self.s:
            return False
        return self.certified or self._checked(arrived) is not None

    def decode_vector(self, arrived):
        count = int(np.count_nonzero(arrived))
        if count < self.n - self.s:
            raise DecodeError(f"cyclic code needs {self.n - self.s} finished workers, got {count}")
        if self.certified:
            workers = np.flatnonzero(arrived)[: self.n - self.s]
            coefficients = self._first_cached(workers.tobytes())
        else:
            checked = self._checked(arrived)
            if checked is None:
                raise DecodeError(f"cyclic code n={self.n}, s={self.s}: these {count} finished workers "
                                  f"decode only with an error factor over {DECODE_ERROR_BUDGET:.0e}")
            workers, coefficients, _ = checked
        keep = coefficients != 0.0
        return workers[keep], coefficients[keep]

    def unchecked_decode(self, arrived):
        workers = np.flatnonzero(arrived)[: self.n - self.s]
        if len(workers) < self.n - self.s:
            raise DecodeError(f"cyclic code needs {self.n - self.s} finished workers, got {len(workers)}")
        return workers, self._solve(workers)

    def decode_uses_min_norm(self, arrived) -> bool:
        if self.certified or int(np.count_nonzero(arrived)) < self.n - self.s:
            return False
        checked = self._checked(arrived)
        return checked is not None and checked[2]

    def _checked(self, arrived: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool] | None:
        """(workers, coefficients, least-norm?) of a decode within the budget, or None."""
        return self._checked_cached(np.packbits(np.asarray(arrived, dtype=bool)).tobytes())

    def _checked_decode(self, key: bytes) -> tuple[np.ndarray, np.ndarray, bool] | None:
        arrived = np.unpackbits(np.frombuffer(key, dtype=np.uint8), count=self.n).astype(bool)
        everyone = np.flatnonzero(arrived)
        first = everyone[: self.n - self.s]
        a = self._first_cached(first.tobytes())
        if a is not None:
            return first, a, False
        if len(everyone) > len(first):
            try:
                a = self._solve(everyone)
            except DecodeError:
                return None
            if self._within_budget(everyone, a):
                a.flags.writeable = False
                return everyone, a, True
        return None

    def _solve_first(self, key: bytes) -> np.ndarray | None:
        """The decode vector of the n−s workers ``key`` (a certified code's), or None when it
        is singular or, unchecked by certification, over the budget."""
        workers = np.frombuffer(key, dtype=np.int64)
        try:
            a = self._solve(workers)
        except DecodeError:
            return None
        if not self.certified and not self._within_budget(workers, a):
            return None
        a.flags.writeable = False
        return a

    def _solve(self, workers: np.ndarray) -> np.ndarray:
        """a with aᵀB_I ≈ 1ᵀ over ascending ``workers`` (n−s of them, or more: then the
        least-norm one); raises DecodeError when singular."""
        if self.explicit or self.n <= self.DENSE_DECODE_MAX_N:
            return self._solve_dense(workers)
        if len(workers) > self.n - self.s:
            return self._solve_null_space(workers)
        try:
            a = self._solve_null_space(workers)
        except DecodeError:  # refinement did not settle: the banded LU decides
            return self._solve_band(workers)
        if self._within_budget(workers, a):
            return a
        try:  # the banded LU may solve this set more accurately
            banded = self._solve_band(workers)
        except DecodeError:
            return a
        return min((a, banded), key=lambda v: error_factor(*self.decode_error(workers, v), self._dtype))

    def _solve_dense(self, workers: np.ndarray) -> np.ndarray:
        """aᵀ B_I = 1ᵀ by QR of B_Iᵀ (B_I has rank n−s); with more than n−s workers, the
        least-norm solution."""
        sub = self.encoding[workers]
        if len(workers) > self.n - self.s:
            return np.linalg.lstsq(sub.T, np.ones(self.n), rcond=None)[0]
        q, r = np.linalg.qr(np.ascontiguousarray(sub.T))
        try:
            return np.linalg.solve(r, q.T @ np.ones(self.n))
        except np.linalg.LinAlgError as exc:
            raise DecodeError(f"cyclic code: singular decode system for workers {workers.tolist()}") from exc

    def _solve_band(self, workers: np.ndarray) -> np.ndarray:
        """The banded LU on parts s … n−1 (:func:`banded_solve`), O(n·s²)."""
        try:
            return banded_solve(self.band, workers, np.ones(len(workers)))
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise DecodeError(f"cyclic code: singular decode system for {len(workers)} workers") from exc

    def _solve_null_space(self, workers: np.ndarray) -> np.ndarray:
        """One s × s solve (least-norm: s × |S|) against a basis of B's left null space, refined
        by I₀'s banded LU (:class:`NullSpaceDecoder`, built on first use), O(s³ + n·s). Kept
        when Σ a_i·B_i is within ``_NULL_SPACE_RESIDUAL`` of 1, or when refinement settled within
        the rounding of computing it at all, ε·Σ_i |a_i|·Σ_j |B_ij|; otherwise DecodeError."""
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
        return a[workers]
