"""How far a decode may be from the exact sum: the bound every gradient code certifies or checks.

Worker i sends m_i = Σ_j B_ij·g_j, formed in the message dtype, and the coordinator decodes
Σ_{i∈I} a_i·m̂_i in float64. Two things separate that from the exact sum Σ_j g_j:

* the **residual** r = aᵀB_I − 1ᵀ (exact decode vectors have r = 0; solved ones carry rounding,
  and an ill-conditioned solve more), which adds Σ_j r_j·g_j;
* **rounding**: the worker rounds its message, a relative error of at most u (the unit
  roundoff of the message dtype: 2⁻²⁴ for fp32, 2⁻⁵³ for fp64), and multiplies by its
  coefficients rounded to that dtype, another u unless every B_ij is exactly representable in it
  (FR's 1s, the group code's dyadic ρ = 1 coefficients; always in fp64). So m̂_i − m_i is at
  most ε·Σ_j |B_ij|·|g_j| per element, ε = u with exact coefficients and 2u otherwise, and the
  decode multiplies it by a_i.

Per element e, with A = max_j Σ_i |a_i|·|B_ij| (the decode's **amplification**: 1 for uncoded
chunks and fractional repetition),

    |Σ_i a_i·m̂_ie − Σ_j g_je| ≤ Σ_j (|r_j| + ε·Σ_i |a_i||B_ij|)·|g_je| ≤ E·Σ_j |g_je|,
    E = ‖r‖_∞ + ε·A,

hence ‖decoded − Σ_j g_j‖ ≤ E·‖Σ_j |g_j|‖. E is the decode's **error factor**; gcode decodes
only from sets with E ≤ :data:`DECODE_ERROR_BUDGET`, a fixed absolute number (it does not grow
with the coefficients). A code either proves that for every set it decodes from (it is
``certified``: every set was enumerated at construction) or checks each decode set as it meets
it, and does not decode from a set that fails (see ``GradientCode.decodable``).

Relative to the exact sum the bound is E·κ, with κ = ‖Σ_j |g_j|‖ / ‖Σ_j g_j‖ ≥ 1 the batch's
cancellation ratio: 1 when the chunk gradients point the same way, and data-dependent otherwise
(about 0.8·√k for k independent random chunk gradients, where the errors themselves are
independent too: the residual term's expected relative error is then ‖r‖₂/√k ≤ ‖r‖_∞). Rounding
inside the worker's own backward pass is of the same kind as the message's and is amplified by
the same A; uncoded training (A = 1) does not amplify it.
"""

from __future__ import annotations

import numpy as np

#: the most a decode's error factor E = ‖aᵀB − 1‖_∞ + ε·A may be: half the 1e-6 gcode promises
#: (E bounds the error against the chunk gradients' mass; the other half is headroom)
DECODE_ERROR_BUDGET = 5e-7
#: the message dtypes a code may choose, cheapest first
MESSAGE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def error_factor(residual: float, amplification: float, dtype, exact_coefficients: bool = False) -> float:
    """E = residual + ε·amplification, ε = u(dtype), doubled unless the coefficients are exact
    in ``dtype`` (module docstring; every float64 coefficient is exact in float64)."""
    unit = float(np.finfo(dtype).eps) / 2
    exact = exact_coefficients or np.dtype(dtype) == np.float64
    return float(residual) + (1 if exact else 2) * unit * float(amplification)


def cheapest_dtype(residual: float, amplification: float,
                   exact_coefficients: bool = False) -> np.dtype | None:
    """The cheapest message dtype whose error factor is within the budget; None when none is."""
    for dtype in MESSAGE_DTYPES:
        if error_factor(residual, amplification, dtype, exact_coefficients) <= DECODE_ERROR_BUDGET:
            return dtype
    return None


def exact_in(matrix: np.ndarray, dtype) -> bool:
    """Whether every entry of ``matrix`` is exactly representable in ``dtype``."""
    return bool(np.array_equal(np.asarray(matrix).astype(dtype).astype(np.float64), matrix))


def residual_and_amplification(rows: np.ndarray, a: np.ndarray) -> tuple[float, float]:
    """(‖aᵀB_I − 1‖_∞, max_j Σ_i |a_i||B_ij|) of decode vector ``a`` over dense ``rows`` B_I;
    ``rows`` and ``a`` may carry leading batch dimensions (one decode set each): then arrays."""
    residual = np.abs(np.einsum("...i,...ij->...j", a, rows) - 1.0).max(axis=-1)
    amplification = np.einsum("...i,...ij->...j", np.abs(a), np.abs(rows)).max(axis=-1)
    return residual, amplification
