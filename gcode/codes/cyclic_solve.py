"""Decode vectors of a generated cyclic code beyond the dense limit (numpy and scipy only).

B is the code's n × n encoding, row i supported on parts i … i+s (mod n), held column-major as
band[i, d] = B[i, (i+d) mod n] (a diagonal of B is one contiguous column). A decode set I of
n−s workers needs a with Σ_{i∈I} a_i·B_i = 1ᵀ.

* :func:`banded_solve`: the parts s … n−1 of that system are square with bandwidth s (the k-th
  worker's part i_k+d lands i_k+d−s−k ∈ [−s, s] rows from the diagonal), so LU with partial
  pivoting solves it in O(n·s²).
* :class:`NullSpaceDecoder`: B has rank n−s, so L = {z : zᵀB = 0} has dimension s. Given one
  decode vector a₀ and an orthonormal basis Q (n × s) of L, the decode vector of I (all workers
  but the s of S) is a₀ + Q·c with (a₀ + Q·c)_S = 0: the s × s system Q_S·c = −a₀_S, in
  O(s³ + n·s) per set instead of O(n·s²). With fewer than s stragglers the system is
  underdetermined and its least-norm c gives the least-norm decode vector (a₀ ⊥ Q). L is found once:
  with I₀ the first n−s workers, every other row is b_j = Σ_{i∈I₀} C_ji·b_i (one banded solve with s
  right-hand sides), so e_j − C_j ∈ L, and those s vectors are independent. The paper's codes are
  ill-conditioned (coefficients up to 10⁶–10⁷), so that vector is then refined: the residual
  ρ = 1ᵀ − aᵀB gets a particular solution from I₀'s banded LU (factored once, O(n·s) per use), moved
  onto I by the same Q_S system, until a step no longer reduces ρ (fixed-precision iterative refinement).
The caller checks every decode vector on all n parts (:func:`band_product`).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack, solve_banded

#: refinement steps at most per decode set (one or two on the paper's codes, and the one that
#: shows that the residual settled)
MAX_REFINEMENTS = 10


def build_band(n: int, s: int, seed: int, batch: int = 64) -> np.ndarray:
    """The rows of the generated (n, s) code, column-major: band[i, 0] = 1 and band[i, 1:] =
    −H[:, S_i]⁻¹·H[:, i] for S_i = {i+1 … i+s} (mod n), H (s × n, H·1 = 0) drawn from ``seed``;
    O(n·s³)."""
    band = np.ones((n, s + 1), order="F")
    if s == 0:
        return band
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((s, n))
    h[:, -1] = -h[:, :-1].sum(axis=1)  # H·1 = 0
    offsets = np.arange(1, s + 1)
    for start in range(0, n, batch):
        rows = np.arange(start, min(n, start + batch))
        support = (rows[:, None] + offsets) % n                  # (k, s)
        systems = np.moveaxis(h[:, support], 1, 0)               # (k, s, s): h[:, S_i]
        band[rows, 1:] = -np.linalg.solve(systems, h[:, rows].T[:, :, None])[:, :, 0]
    return band


def band_product(band: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(n,) Σ_i a_i·B_i for a coefficient per worker (zero for those not decoding), O(n·s)."""
    n, width = band.shape
    extended = np.zeros(n + width - 1)
    for d in range(width):
        extended[d:d + n] += band[:, d] * a
    product = extended[:n]
    product[:width - 1] += extended[n:]
    return product


def _banded_system(band: np.ndarray, workers: np.ndarray, spare: int = 0) -> np.ndarray:
    """LAPACK band storage of the system of :func:`banded_solve` (A[p − s, k] = B[workers[k], p]
    at row ``spare`` + s + (p − s) − k), with ``spare`` zero rows on top for the LU's fill-in."""
    n, width = band.shape
    s, m = width - 1, len(workers)
    k = np.broadcast_to(np.arange(m)[:, None], (m, width))
    row = workers[:, None] + np.arange(width) - s  # the part, less s, of each band entry
    ok = (row >= 0) & (row < n - s)  # parts 0 … s−1 (incl. the wrapped ones) dropped
    ab = np.zeros((spare + 2 * s + 1, m))
    ab[spare + s + row[ok] - k[ok], k[ok]] = band[workers][ok]
    return ab


def banded_solve(band: np.ndarray, workers: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """x with Σ_k x_k·B[workers[k], p] = rhs[p − s] for the parts p = s … n−1 (``rhs`` of shape
    (n−s,) or (n−s, q)); raises numpy's LinAlgError or ValueError when singular."""
    s = band.shape[1] - 1
    return solve_banded((s, s), _banded_system(band, workers), rhs, check_finite=False)


class _BandedLU:
    """The LU of :func:`banded_solve`'s system for one decode set, factored once."""

    def __init__(self, band: np.ndarray, workers: np.ndarray):
        self.s = band.shape[1] - 1
        self.lu, self.pivots, info = lapack.dgbtrf(_banded_system(band, workers, self.s), self.s, self.s)
        if info != 0:
            raise np.linalg.LinAlgError(f"banded LU failed (info {info})")

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        x, info = lapack.dgbtrs(self.lu, self.s, self.s, rhs.reshape(len(rhs), -1), self.pivots)
        if info != 0:
            raise np.linalg.LinAlgError(f"banded LU solve failed (info {info})")
        return x.reshape(rhs.shape)


class NullSpaceDecoder:
    """Decode vectors of any n−s workers of a generated (n, s) cyclic code, s ≥ 1, from one
    s × s solve each plus refinement (module docstring). Build once per code: O(n·s²)."""

    def __init__(self, band: np.ndarray):
        n, width = band.shape
        s = width - 1
        m = n - s
        self._first = _BandedLU(band, np.arange(m))  # I₀: the first n−s workers
        a0 = np.zeros(n)
        a0[:m] = self._first.solve(np.ones(m))
        rhs = np.zeros((m, s))  # row j = m + t of B on the parts s … n−1
        for t, j in enumerate(range(m, n)):
            parts = j + np.arange(width)
            ok = (parts >= s) & (parts < n)  # row j wraps past n − 1 back to parts 0 … s−1
            rhs[parts[ok] - s, t] = band[j, ok]
        basis = np.zeros((n, s))
        basis[:m] = -self._first.solve(rhs)
        basis[m + np.arange(s), np.arange(s)] = 1.0
        self.basis = np.linalg.qr(basis)[0]
        self.a0 = a0 - self.basis @ (self.basis.T @ a0)  # the least-norm decode vector
        self.band, self.n, self.s = band, n, s

    def solve(self, workers: np.ndarray, enough: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """(a, Σ_i a_i·B_i, settled) for ascending ``workers`` (at least n−s of them): a (n,)
        zero off ``workers``; with more than n−s workers, the least-norm such a (the least-norm
        c, as a₀ ⊥ Q). Refined while max|Σ a_i·B_i − 1| > ``enough``; ``settled``: a refinement
        step no longer reduced that residual. Raises LinAlgError when Q_S is singular."""
        absent = np.ones(self.n, dtype=bool)
        absent[workers] = False
        stragglers = np.flatnonzero(absent)
        if len(stragglers) == self.s:
            lu, pivots, info = lapack.dgetrf(self.basis[stragglers])
            if info != 0:
                raise np.linalg.LinAlgError(f"singular null-space system (info {info})")

            def solve_c(rhs: np.ndarray) -> np.ndarray:
                return lapack.dgetrs(lu, pivots, rhs)[0]
        else:  # fewer stragglers than s: the least-norm c of an underdetermined system
            pseudo_inverse = np.linalg.pinv(self.basis[stragglers])

            def solve_c(rhs: np.ndarray) -> np.ndarray:
                return pseudo_inverse @ rhs

        def onto_workers(z: np.ndarray) -> np.ndarray:
            """z + Q·c with (z + Q·c)_S = 0: the same change of Σ z_i·B_i, zero on S."""
            moved = z + self.basis @ solve_c(-z[stragglers])
            moved[stragglers] = 0.0
            return moved

        a = onto_workers(self.a0)
        product = band_product(self.band, a)
        residual = np.abs(product - 1.0).max()
        for _ in range(MAX_REFINEMENTS):
            if not residual > enough:
                break
            z = np.zeros(self.n)
            z[:self.n - self.s] = self._first.solve((1.0 - product)[self.s:])
            candidate = a + onto_workers(z)
            candidate_product = band_product(self.band, candidate)
            candidate_residual = np.abs(candidate_product - 1.0).max()
            if not candidate_residual < residual:  # stagnated: no step will do better
                return a, product, True
            a, product, residual = candidate, candidate_product, candidate_residual
        return a, product, False
