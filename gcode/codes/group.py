"""The group code (``gc_code="group"``): fractional repetition's groups, each coded inside so that
the load reaches (s+1)/n, with every decode certified at construction.

Construction for n workers and s stragglers. g = ⌊n/(s+1)⌋ groups of consecutive workers; group
k has m_k = s+1+ρ_k distinct members (*nodes*), the r = n − g(s+1) workers beyond FR's spread
over the groups (ρ_k ∈ {⌊r/g⌋, ⌈r/g⌉}) up to a cap ρ_max; workers beyond Σ m_k are *replicas*
of nodes of their group (a replica sends its node's message). Group k's share of the data,
m_k/N of it (N = Σ_k m_k), is split into m_k equal parts (one part when ρ_k = 0). Node l has a
point t_l in [−1, 1]; part j is held by every node but the ρ_k nodes of lack(j) = {j, j+⌊m/ρ⌋,
…, j+(ρ−1)⌊m/ρ⌋} (mod m), and node l sends

    f_l = Σ_j B_lj·g_j,    B_lj = ∏_{q∈lack(j)} (t_l − t_q),

the value at t_l of the vector polynomial P(t) = Σ_j ∏_{q∈lack(j)} (t − t_q)·g_j of degree ρ,
whose leading coefficient is the group's gradient Σ_j g_j. Any ρ+1 distinct nodes I recover it
as a divided difference: a_l = ∏_{k∈I, k≠l} 1/(t_l − t_k). Every node holds m − ρ = s+1 of the
m parts, so every worker computes (s+1)/N of the data: the load is (s+1)/N, which is (s+1)/n
when no worker is a replica. s stragglers leave at least ρ_k+1 nodes in every group. ρ_k = 0 is
FR: one part, coefficient 1.

Conditioning. The decode sets of a group are its (ρ+1)-subsets of nodes (a decode takes the
first ρ+1 finished nodes of each group), so enumerating them per distinct group shape (m, ρ)
computes the worst error factor E = ‖r‖_∞ + ε·A (:mod:`gcode.codes.exactness`) exactly: the
code is certified, and chooses the cheapest message dtype whose worst E is within the budget.
The points are spaced with gaps proportional to max(u, 1−u) on u ∈ [0, 1] (the amplification of
a close pair is about the distance to the farthest lacking node over the pair's gap), and a
part's lacking nodes are spread over the group: worst amplification 1 (ρ = 0), about 1.4·m
(ρ = 1), 2·10³ (ρ = 2, m = 64), 3·10⁴ (ρ = 3, m = 64). The points are multiples of 2⁻¹⁶, so
ρ = 1 coefficients (one difference of two points) are exact in fp32 and its messages carry one
rounding, not two. So FR (ρ = 0) and ρ = 1 groups of up to 6 nodes are certified in fp32;
larger ones need fp64.

Choosing ρ_max. ρ_hi is the least cap that uses every worker, lowered until one shape's subsets
number at most ``MAX_CERTIFY_SUBSETS`` and the code certifies in fp64. When FR's load 1/g is
within ``FP32_LOAD_SLACK`` of the load at ρ_hi, the code takes ρ_max = 0 (FR, fp32 messages:
half the bytes); otherwise ρ_max = ρ_hi (fp64 messages, the least load).
"""

from __future__ import annotations

import math
from functools import cached_property, lru_cache

import numpy as np

from .exactness import DECODE_ERROR_BUDGET, MESSAGE_DTYPES, cheapest_dtype, error_factor, exact_in
from .gradient_code import DecodeError, GradientCode

#: FR's fp32 messages are preferred while its load is at most this much above the least load
#: (the 3% within which issue 27 asks the paper's configurations to stay)
FP32_LOAD_SLACK = 0.03
#: a group shape is certified by enumerating its (ρ+1)-subsets of nodes; at most this many
MAX_CERTIFY_SUBSETS = 1_000_000
_BATCH = 20_000  # subsets per vectorized certification step
#: node points are multiples of this: a difference of two has at most 18 significant bits
POINT_GRID = 2.0 ** -16


def group_points(m: int) -> np.ndarray:
    """m points in [−1, 1], gaps ∝ max(u, 1−u) on u ∈ [0, 1] (module docstring), rounded to
    multiples of ``POINT_GRID`` (so ρ = 1 coefficients, differences of two points, are exact in
    fp32) unless that would merge two of them."""
    if m == 1:
        return np.zeros(1)
    y = np.linspace(0.0, 2.0 * math.log(2.0), m)  # ∫ du / max(u, 1−u) over [0, 1] = 2 ln 2
    u = np.where(y <= math.log(2.0), 1.0 - np.exp(-y), np.exp(y - math.log(2.0)) / 2.0)
    points = 2.0 * u - 1.0
    snapped = np.round(points / POINT_GRID) * POINT_GRID
    return snapped if np.all(np.diff(snapped) > 0) else points


def lacking(m: int, rho: int) -> np.ndarray:
    """(m, ρ): the nodes that lack part j of a group of m nodes."""
    step = m // rho if rho else 0
    return (np.arange(m)[:, None] + step * np.arange(rho)[None, :]) % m


def group_matrix(m: int, rho: int) -> np.ndarray:
    """(m nodes, parts) encoding of one group: B_lj = ∏_{q∈lack(j)} (t_l − t_q); (m, 1) ones
    when ρ = 0."""
    if rho == 0:
        return np.ones((m, 1))
    t = group_points(m)
    return np.prod(t[:, None, None] - t[lacking(m, rho)][None, :, :], axis=2)


def divided_difference_weights(points: np.ndarray) -> np.ndarray:
    """(..., ρ+1) weights a_l = ∏_{k≠l} 1/(t_l − t_k) of each row of ``points``."""
    diff = points[..., :, None] - points[..., None, :]
    k = points.shape[-1]
    diff[..., np.arange(k), np.arange(k)] = 1.0
    return 1.0 / np.prod(diff, axis=-1)


def combinations(m: int, k: int) -> np.ndarray:
    """(C(m, k), k) every k-subset of range(m), rows ascending, in lexicographic order."""
    rows = np.arange(m - k + 1)[:, None]
    for depth in range(1, k):
        last = rows[:, -1]
        counts = m - k + depth - last  # values last+1 … m−k+depth
        start = np.repeat(last + 1 - np.cumsum(counts) + counts, counts)
        rows = np.column_stack([np.repeat(rows, counts, axis=0), start + np.arange(counts.sum())])
    return rows


@lru_cache(maxsize=64)
def certify_shape(m: int, rho: int) -> tuple[float, float, tuple[int, ...]]:
    """(worst ‖r‖_∞, worst A, the subset of worst A) over every (ρ+1)-subset of a group of m
    nodes."""
    if rho == 0:
        return 0.0, 1.0, (0,)
    t, enc = group_points(m), group_matrix(m, rho)
    subsets = combinations(m, rho + 1)
    worst_r = worst_a = 0.0
    worst_subset = tuple(subsets[0].tolist())
    for start in range(0, len(subsets), _BATCH):
        batch = subsets[start:start + _BATCH]
        a = divided_difference_weights(t[batch])
        total, mass = np.zeros((len(batch), m)), np.zeros((len(batch), m))
        for k in range(rho + 1):  # Σ_i a_i·B_i and Σ_i |a_i|·|B_i|, one node of each set at a time
            rows = enc[batch[:, k]]
            total += a[:, k, None] * rows
            mass += np.abs(a[:, k, None]) * np.abs(rows)
        worst_r = max(worst_r, float(np.abs(total - 1.0).max()))
        amplification = mass.max(axis=1)
        if amplification.max() > worst_a:
            worst_a = float(amplification.max())
            worst_subset = tuple(batch[int(np.argmax(amplification))].tolist())
    return worst_r, worst_a, worst_subset


def group_load(n: int, s: int, rho_max: int) -> float:
    """The load of the group code with cap ``rho_max``: (s+1)/N, N = min(n, g·(s+1+ρ_max))."""
    g = n // (s + 1)
    return (s + 1) / min(n, g * (s + 1 + rho_max))


def highest_rho(n: int, s: int) -> int:
    """ρ_hi before certification: the least cap that uses every worker, lowered until a group
    shape has at most ``MAX_CERTIFY_SUBSETS`` subsets to enumerate."""
    g = n // (s + 1)
    rho = -(-(n - g * (s + 1)) // g)
    while rho > 0 and math.comb(s + 1 + rho, rho + 1) > MAX_CERTIFY_SUBSETS:
        rho -= 1
    return rho


def fr_is_close(n: int, s: int, rho: int) -> bool:
    """Whether FR's load 1/g is within ``FP32_LOAD_SLACK`` of the load at cap ``rho``."""
    return 1.0 / (n // (s + 1)) <= (1 + FP32_LOAD_SLACK) * group_load(n, s, rho)


def group_code_load(n: int, s: int) -> float:
    """``GroupCode(n, s).load`` without building the code (the tuner's closed form), assuming
    the highest cap certifies in fp64, as it does for every n ≤ 1024, s ≤ 60 (the benchmark
    ``benchmarks/bench_codes.py`` builds them all)."""
    rho = highest_rho(n, s)
    return group_load(n, s, 0 if rho == 0 or fr_is_close(n, s, rho) else rho)


class GroupCode(GradientCode):
    """The group code of the module docstring; ``rho_max`` forces the cap (tests, benchmarks)."""

    kind = "group"

    def __init__(self, n: int, s: int, rho_max: int | None = None):
        super().__init__(n, s)
        g = self.n // (self.s + 1)
        extra = self.n - g * (self.s + 1)
        self.num_groups = g
        if rho_max is None:
            rho_max, (self.residual, self.amplification) = self._choose_rho(g, extra)
        else:
            self.residual, self.amplification = self._certify(g, extra, rho_max)
        self.rho_max = rho_max
        self._layout(g, extra, rho_max)
        self.certified = True
        self.coefficients_exact = all(exact_in(m, np.float32) for m in self._matrices.values())
        dtype = cheapest_dtype(self.residual, self.amplification, self.coefficients_exact)
        if dtype is None:
            raise ValueError(f"group code n={n}, s={s}, rho_max={rho_max}: worst error factor "
                             f"{error_factor(self.residual, self.amplification, MESSAGE_DTYPES[-1]):.1e} "
                             f"exceeds the budget {DECODE_ERROR_BUDGET:.0e}; lower rho_max")
        self._dtype = dtype
        self.error_bound = self.error_factor(self.residual, self.amplification)

    # ---- construction ------------------------------------------------------------------------
    @staticmethod
    def _rhos(g: int, extra: int, rho_max: int) -> np.ndarray:
        """ρ_k per group: ``extra`` spread evenly, each capped at ``rho_max``."""
        rhos = np.full(g, extra // g)
        rhos[: extra % g] += 1
        return np.minimum(rhos, rho_max)

    def _certify(self, g: int, extra: int, rho_max: int) -> tuple[float, float]:
        shapes = {int(rho) for rho in self._rhos(g, extra, rho_max)}
        worst = [certify_shape(self.s + 1 + rho, rho) for rho in shapes]
        return max(r for r, _, _ in worst), max(a for _, a, _ in worst)

    def _choose_rho(self, g: int, extra: int) -> tuple[int, tuple[float, float]]:
        """(ρ_max, worst (residual, amplification)) by the rule of the module docstring."""
        rho_hi = highest_rho(self.n, self.s)
        while rho_hi > 0 and not fr_is_close(self.n, self.s, rho_hi):
            worst = self._certify(g, extra, rho_hi)
            if error_factor(*worst, MESSAGE_DTYPES[-1]) <= DECODE_ERROR_BUDGET:
                return rho_hi, worst
            rho_hi -= 1
        return 0, (0.0, 1.0)

    def _layout(self, g: int, extra: int, rho_max: int) -> None:
        """Groups, nodes, replicas and parts (module docstring)."""
        rhos = self._rhos(g, extra, rho_max)
        nodes = self.s + 1 + rhos                          # m_k
        replicas = np.full(g, (extra - int(rhos.sum())) // g)
        replicas[: (extra - int(rhos.sum())) % g] += 1
        sizes = nodes + replicas
        self.group_rho, self.group_nodes = rhos, nodes
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.group_of = np.repeat(np.arange(g), sizes)
        position = np.arange(self.n) - self.group_starts[self.group_of]
        self.local_node = position % nodes[self.group_of]  # a replica shares its node
        self.node_starts = np.concatenate([[0], np.cumsum(nodes)[:-1]]).astype(np.int64)
        self.node_of = self.node_starts[self.group_of] + self.local_node
        self.num_nodes = int(nodes.sum())
        group_parts = np.where(rhos > 0, nodes, 1)
        self.part_starts = np.concatenate([[0], np.cumsum(group_parts)[:-1]]).astype(np.int64)
        self._num_parts = int(group_parts.sum())
        share = nodes / self.num_nodes
        self._part_fractions = np.repeat(share / group_parts, group_parts)
        self._points = {int(m): group_points(int(m)) for m in set(nodes.tolist())}
        self._matrices = {(int(m), int(rho)): group_matrix(int(m), int(rho))
                          for m, rho in set(zip(nodes.tolist(), rhos.tolist()))}
        self.node_point = np.concatenate([self._points[int(m)] for m in nodes])
        self._node_group = np.repeat(np.arange(g), nodes)

    # ---- structure ---------------------------------------------------------------------------
    @property
    def num_parts(self) -> int:
        return self._num_parts

    @property
    def part_fractions(self) -> np.ndarray:
        return self._part_fractions

    @property
    def part_groups(self) -> tuple[int, ...]:
        """Runs of equal parts: a group with ρ = 0 has one part of (s+1)/N, the others 1/N."""
        single = self.group_rho == 0
        starts = np.flatnonzero(np.concatenate([[True], single[1:] != single[:-1]]))
        runs = np.split(np.where(single, 1, self.group_nodes), starts[1:])
        return tuple(int(run.sum()) for run in runs)

    @property
    def load(self) -> float:
        return float((self.s + 1) / self.num_nodes)

    @property
    def message_dtype(self) -> np.dtype:
        return self._dtype

    def worst_stragglers(self) -> list[np.ndarray]:
        """Per group shape, a straggler mask of at most s workers that leaves the first group of
        that shape decoding from its certificate's worst subset (every other node, and its
        replicas, straggles, up to s)."""
        masks = []
        for rho in sorted(set(self.group_rho.tolist())):
            k = int(np.flatnonzero(self.group_rho == rho)[0])
            worst = certify_shape(int(self.group_nodes[k]), rho)[2]
            members = self.groups[k]
            others = members[~np.isin(self.local_node[members], worst)]
            mask = np.zeros(self.n, dtype=bool)
            mask[others[: self.s]] = True
            masks.append(mask)
        return masks

    @property
    def groups(self) -> list[np.ndarray]:
        """The members of each group."""
        return np.split(np.arange(self.n), self.group_starts[1:])

    def row(self, worker):
        k = int(self.group_of[worker])
        m, rho = int(self.group_nodes[k]), int(self.group_rho[k])
        coefficients = self._matrices[(m, rho)][int(self.local_node[worker])]
        parts = np.flatnonzero(coefficients)
        return parts + int(self.part_starts[k]), coefficients[parts]

    @cached_property
    def encoding(self) -> np.ndarray:
        enc = np.zeros((self.n, self.num_parts))
        for w in range(self.n):
            parts, coefficients = self.row(w)
            enc[w, parts] = coefficients
        enc.flags.writeable = False
        return enc

    def support_sums(self, part_values):
        """Per worker: its group's total over all parts, less the ρ parts its node lacks
        (node l lacks part j ⟺ j = l − i·⌊m/ρ⌋ mod m for some i < ρ); O(n·ρ)."""
        values = np.asarray(part_values)
        totals = np.add.reduceat(values, self.part_starts)[self.group_of]
        m = self.group_nodes[self.group_of]
        rho = self.group_rho[self.group_of]
        step = np.where(rho > 0, m // np.maximum(rho, 1), 0)
        for i in range(int(self.group_rho.max(initial=0))):
            lacks = rho > i
            part = self.part_starts[self.group_of] + (self.local_node - i * step) % m
            totals = totals - np.where(lacks, values[np.where(lacks, part, 0)], 0)
        return totals

    # ---- decoding ----------------------------------------------------------------------------
    def _chosen(self, arrived: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(representative worker per node, chosen nodes, finished nodes per group): a node's
        representative is its lowest finished worker, and each group's chosen nodes are its
        first ρ_k+1 finished ones in the order of their representatives, group by group."""
        workers = np.flatnonzero(np.asarray(arrived, dtype=bool))
        rep = np.full(self.num_nodes, self.n, dtype=np.int64)
        np.minimum.at(rep, self.node_of[workers], workers)
        nodes = np.flatnonzero(rep < self.n)
        nodes = nodes[np.lexsort((rep[nodes], self._node_group[nodes]))]
        groups = self._node_group[nodes]
        counts = np.bincount(groups, minlength=self.num_groups)
        rank = np.arange(len(nodes)) - (np.cumsum(counts) - counts)[groups]
        return rep, nodes[rank <= self.group_rho[groups]], counts

    def decodable(self, arrived):
        return bool((self._chosen(arrived)[2] > self.group_rho).all())

    def decode_vector(self, arrived):
        rep, nodes, counts = self._chosen(arrived)
        short = np.flatnonzero(counts <= self.group_rho)
        if len(short):
            k = int(short[0])
            raise DecodeError(f"group code: group {k} (workers {self.groups[k].tolist()}) has "
                              f"{int(counts[k])} finished nodes, needs {int(self.group_rho[k]) + 1}")
        coefficients = np.ones(len(nodes))
        rhos = self.group_rho[self._node_group[nodes]]
        for rho in set(self.group_rho.tolist()) - {0}:
            mine = rhos == rho  # whole groups, ρ+1 consecutive nodes each
            points = self.node_point[nodes[mine]].reshape(-1, rho + 1)
            coefficients[mine] = divided_difference_weights(points).ravel()
        workers = rep[nodes]
        order = np.argsort(workers)
        return workers[order], coefficients[order]
