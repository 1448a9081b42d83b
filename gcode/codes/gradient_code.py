"""The gradient-code interface (Tandon et al., ICML 2017) that every code implements.

A gradient code splits one job's data into ``num_parts`` parts with gradients g_1 … g_k and has
worker i send f_i = Σ_j encoding[i, j] · g_j. It tolerates ``s`` stragglers: for every set of
at least n − s finished workers there are decode coefficients a with aᵀ·encoding_I = 1ᵀ, so
Σ_i a_i f_i = Σ_j g_j exactly.

Exactness (:mod:`gcode.codes.exactness`): a code decodes only from sets whose error factor
E = ‖aᵀB − 1‖_∞ + ε·A is within the budget. A ``certified`` code proved that at construction for
every set it decodes from; an uncertified one checks each set in ``decodable``, so a set that
fails is "not yet decodable" to every driver (the round waits for more workers).

Codes work on arrival masks (bool arrays of length n) in O(n) numpy: ``decodable(mask)`` and
``decode_vector(mask)``. Worker rows (``row``) and the dense ``encoding`` are built only when
asked for, so a simulator that only asks whether a job decodes never builds them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .exactness import error_factor, residual_and_amplification


class DecodeError(RuntimeError):
    """Raised when the finished workers do not determine the full gradient."""


def mask_of(n: int, finished) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    workers = np.fromiter((int(w) for w in finished), dtype=np.int64)
    if workers.size and (workers.min() < 0 or workers.max() >= n):
        raise ValueError(f"finished workers must be in 0..{n - 1}")
    mask[workers] = True
    return mask


class GradientCode(ABC):
    """An (n, s) gradient code over ``num_parts`` parts."""

    kind: str
    #: every set ``decodable`` accepts decodes within the budget, proven at construction
    certified: bool = True
    #: the worst error factor E over the sets it decodes from (the budget when checked per set)
    error_bound: float
    #: the worst ‖aᵀB − 1‖_∞ and amplification A found by certification (NaN when not certified)
    residual: float
    amplification: float
    #: every coefficient is exactly representable in fp32 (a worker's fp32 weights are exact)
    coefficients_exact: bool = False

    def __init__(self, n: int, s: int):
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got n={n!r}")
        if not isinstance(s, (int, np.integer)) or not 0 <= s < n:
            raise ValueError(f"s must satisfy 0 <= s < n, got s={s!r}, n={n}")
        self.n = int(n)
        self.s = int(s)
        self._row_tuples: dict[int, list] = {}  # offset -> each worker's row_tuples or None

    @property
    @abstractmethod
    def encoding(self) -> np.ndarray:
        """(n, num_parts) float64 coefficient matrix (dense; built on first use)."""

    @property
    @abstractmethod
    def part_fractions(self) -> np.ndarray:
        """(num_parts,) fraction of the coded data held by each part; sums to 1."""

    @property
    @abstractmethod
    def num_parts(self) -> int: ...

    @property
    def part_groups(self) -> tuple[int, ...]:
        """Sizes of the consecutive runs of equal parts (:mod:`gcode.codes.chunking` rounds
        each run's samples as one group); one run unless parts differ in size."""
        return (self.num_parts,)

    @property
    @abstractmethod
    def load(self) -> float:
        """Largest fraction of the coded data that one worker processes."""

    @abstractmethod
    def row(self, worker: int) -> tuple[np.ndarray, np.ndarray]:
        """(parts, coefficients) of ``worker``'s message, parts ascending and coefficients
        nonzero: the nonzero entries of its encoding row."""

    def row_tuples(self, worker: int, offset: int = 0) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """``worker``'s row as a task carries it: (parts + ``offset``, coefficients), built once
        per (worker, offset) and shared by every round's task (a round's plan holds the same)."""
        rows = self._row_tuples.get(offset)
        if rows is None:
            rows = self._row_tuples[offset] = [None] * self.n
        tuples = rows[worker]
        if tuples is None:
            parts, coefficients = self.row(worker)
            tuples = rows[worker] = (tuple((parts + offset).tolist()), tuple(coefficients.tolist()))
        return tuples

    @abstractmethod
    def support_sums(self, part_values: np.ndarray) -> np.ndarray:
        """(n,) per worker: Σ part_values over the parts its message reads."""

    @abstractmethod
    def decodable(self, arrived: np.ndarray) -> bool:
        """True when the workers of the bool mask ``arrived`` determine the full gradient within
        the decode error budget."""

    @abstractmethod
    def decode_vector(self, arrived: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(workers ascending, coefficients) over arrived workers with Σ a_i encoding[i] = 1ᵀ;
        raises DecodeError when ``decodable(arrived)`` is False."""

    def unchecked_decode(self, arrived: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The decode vector of the usual set for ``arrived`` as solved, before any budget check
        (what an uncertified code would use if it did not check; adversarial search scores it)."""
        return self.decode_vector(arrived)

    def decode_error(self, workers: np.ndarray, a: np.ndarray) -> tuple[float, float]:
        """(‖aᵀB_I − 1‖_∞, amplification A) of coefficients ``a`` over ascending ``workers``."""
        return residual_and_amplification(self.encoding[workers], a)

    def error_factor(self, residual: float, amplification: float) -> float:
        """E of a decode with this residual and amplification, in this code's message dtype."""
        return error_factor(residual, amplification, self.message_dtype, self.coefficients_exact)

    def decode_uses_min_norm(self, arrived: np.ndarray) -> bool:
        """True when decoding ``arrived`` takes the least-norm decode vector of more than the
        usual set, because the usual set missed the budget (only an uncertified code does)."""
        return False

    def __deepcopy__(self, memo):
        return self  # immutable: copies of a scheme share their codes

    def support(self, worker: int) -> np.ndarray:
        """Indices of the parts that ``worker`` touches."""
        return self.row(worker)[0]

    @property
    @abstractmethod
    def message_dtype(self) -> np.dtype:
        """The cheapest dtype in which every decode stays within the budget."""

    def can_decode(self, finished) -> bool:
        return self.decodable(mask_of(self.n, finished))

    def decode_coefficients(self, finished) -> dict[int, float]:
        """Coefficients a over ``finished`` workers with Σ a_i encoding[i] = 1ᵀ."""
        workers, coefficients = self.decode_vector(mask_of(self.n, finished))
        return dict(zip(workers.tolist(), coefficients.tolist()))
