"""Decode vectors of a generated cyclic code beyond the dense limit (numpy and scipy only).

B is the code's n × n encoding, row i supported on parts i … i+s (mod n), held as
band[i, d] = B[i, (i+d) mod n]. A decode set I of n−s workers needs a with Σ_{i∈I} a_i·B_i = 1ᵀ.

* :func:`banded_solve`: the parts s … n−1 of that system are square with bandwidth s (the k-th
  worker's part i_k+d lands i_k+d−s−k ∈ [−s, s] rows from the diagonal), so LU with partial
  pivoting solves it in O(n·s²).
* :class:`NullSpaceDecoder`: B has rank n−s, so L = {z : zᵀB = 0} has dimension s. Given one
  decode vector a₀ and an orthonormal basis Q (n × s) of L, the decode vector of I (all workers
  but the s of S) is a₀ + Q·c with (a₀ + Q·c)_S = 0: the s × s system Q_S·c = −a₀_S, in
  O(s³ + n·s) per set instead of O(n·s²). L is found once: with I₀ the first n−s workers, every
  other row is b_j = Σ_{i∈I₀} C_ji·b_i (one banded solve with s right-hand sides), so
  e_j − C_j ∈ L, and those s vectors are independent.
The caller checks every decode vector on all n parts (:func:`band_product`).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_banded


def build_band(n: int, s: int, seed: int, batch: int = 64) -> np.ndarray:
    """The rows of the generated (n, s) code: band[i, 0] = 1 and band[i, 1:] = −H[:, S_i]⁻¹·H[:, i]
    for S_i = {i+1 … i+s} (mod n), H (s × n, H·1 = 0) drawn from ``seed``; O(n·s³)."""
    band = np.ones((n, s + 1))
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


def banded_solve(band: np.ndarray, workers: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """x with Σ_k x_k·B[workers[k], p] = rhs[p − s] for the parts p = s … n−1 (``rhs`` of shape
    (n−s,) or (n−s, q)); raises numpy's LinAlgError or ValueError when singular."""
    n, width = band.shape
    s, m = width - 1, len(workers)
    rows = band[workers]
    ab = np.zeros((2 * s + 1, m))
    k = np.arange(m)
    for d in range(s + 1):
        row = workers + d - s
        ok = (row >= 0) & (workers + d < n)  # parts 0 … s−1 (incl. the wrapped ones) dropped
        ab[s + row[ok] - k[ok], k[ok]] = rows[ok, d]
    return solve_banded((s, s), ab, rhs, check_finite=False)


class NullSpaceDecoder:
    """Decode vectors of any n−s workers of a generated (n, s) cyclic code, s ≥ 1, from one
    s × s solve each (module docstring). Build once per code: O(n·s²)."""

    def __init__(self, band: np.ndarray):
        n, width = band.shape
        s = width - 1
        m = n - s
        first = np.arange(m)
        a0 = np.zeros(n)
        a0[:m] = banded_solve(band, first, np.ones(m))
        rhs = np.zeros((m, s))  # row j = m + t of B on the parts s … n−1
        for t, j in enumerate(range(m, n)):
            parts = j + np.arange(width)
            ok = (parts >= s) & (parts < n)  # row j wraps past n − 1 back to parts 0 … s−1
            rhs[parts[ok] - s, t] = band[j, ok]
        basis = np.zeros((n, s))
        basis[:m] = -banded_solve(band, first, rhs)
        basis[m + np.arange(s), np.arange(s)] = 1.0
        self.basis = np.linalg.qr(basis)[0]
        self.a0 = a0 - self.basis @ (self.basis.T @ a0)  # the least-norm decode vector
        self.n, self.s = n, s

    def solve(self, workers: np.ndarray) -> np.ndarray:
        """(n,) coefficients, zero off ``workers`` (n−s ascending workers)."""
        absent = np.ones(self.n, dtype=bool)
        absent[workers] = False
        stragglers = np.flatnonzero(absent)
        c = np.linalg.solve(self.basis[stragglers], -self.a0[stragglers])  # LinAlgError: singular
        a = self.a0 + self.basis @ c
        a[stragglers] = 0.0
        return a
