"""The auto scheme's candidates: a scheme, its parameters and a round-ending policy.

A :class:`Candidate` is one fixed choice a run could make: uncoded, GC with an (n, s) code of
any kind in ``CandidateConfig.gc_codes``, SR-SGC or M-SGC with (B, W, λ), each under one policy:
``earliest``, ``partial`` or ``paper`` at a μ, or ``gap`` at a gap fraction (policy.py).
:func:`candidate_grid` lists every candidate of n workers under a config, in blocks that
:mod:`gcode.sim.replay` evaluates at once. The same grid serves the online tuner and the
hindsight search of ``gcode bench auto``, so auto is always judged against the best fixed
choice it could itself have made.

Online, only B = 1 bursty settings are candidates: their model check needs no bitsets
(fast_b1.py), which keeps the tuner's per-round cost small; ``max_delay`` bounds T.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..codes import GC_CODE_KINDS, make_gc_code, make_scheme, srsgc_s
from .policy import EarliestPolicy, GapPolicy, PaperPolicy, PartialWaitPolicy, Policy

POLICY_KINDS = ("earliest", "partial", "paper", "gap")
#: policy kinds as the replay's integer codes
POLICY_CODE = {kind: i for i, kind in enumerate(POLICY_KINDS)}


@dataclass(frozen=True)
class Candidate:
    """One fixed choice: scheme, its parameters, and the round-ending policy with its value
    (``mu``: μ for partial and paper, the gap fraction for gap, 0 for earliest)."""

    scheme: str
    params: dict = field(hash=False)
    mu: float = 1.0
    policy: str = "partial"

    def key(self) -> tuple:
        return (self.scheme, tuple(sorted(self.params.items())), self.policy, float(self.mu))

    @property
    def delay(self) -> int:
        p = self.params
        return {"msgc": lambda: p["W"] - 2 + p["B"], "srsgc": lambda: p["B"]}.get(self.scheme, lambda: 0)()

    def make_policy(self) -> Policy:
        if self.policy == "earliest":
            return EarliestPolicy()
        if self.policy == "gap":
            return GapPolicy(self.mu)
        return PartialWaitPolicy(self.mu) if self.policy == "partial" else PaperPolicy(self.mu)

    def make_scheme(self, n: int, jobs: int | None):
        return make_scheme(self.scheme, n=n, jobs=jobs, **self.params)

    def label(self) -> str:
        if self.scheme == "uncoded":  # waits for every worker under any policy
            return "uncoded"
        params = ",".join(f"{k}={v}" for k, v in self.params.items())
        policy = self.policy if self.policy == "earliest" else f"{self.policy}={self.mu:g}"
        return f"{self.scheme}({params}) {policy}"

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "params": dict(self.params), "policy": self.policy,
                "mu": float(self.mu)}

    @classmethod
    def from_dict(cls, d: dict) -> Candidate:
        return cls(d["scheme"], dict(d["params"]), float(d["mu"]), d.get("policy", "partial"))


@dataclass(frozen=True)
class CandidateConfig:
    """Which candidates a run (and its hindsight reference) chooses among."""

    schemes: tuple[str, ...] = ("uncoded", "gc", "srsgc", "msgc")
    gc_codes: tuple[str, ...] = ("fr",)  # cyclic codes are slow to build at large n: opt in
    policies: tuple[str, ...] = POLICY_KINDS
    mus: tuple[float, ...] = (0.25, 0.5, 1.0)     # partial and paper
    gaps: tuple[float, ...] = (0.05, 0.1, 0.2)    # gap
    max_delay: int = 1
    grid_points: int = 24                         # s and λ values, geometric over 1 … n
    gc_all_policies: bool = False                 # GC under every policy (see gc_policies)

    def __post_init__(self):
        bad = [k for k in self.gc_codes if k not in GC_CODE_KINDS]
        if bad or not self.gc_codes:
            raise ValueError(f"gc_codes must name codes among {GC_CODE_KINDS}, got {self.gc_codes}")
        bad = [p for p in self.policies if p not in POLICY_KINDS]
        if bad or not self.policies:
            raise ValueError(f"policies must be among {POLICY_KINDS}, got {self.policies}")
        if any(not mu > 0 for mu in self.mus) or any(not g > 0 for g in self.gaps):
            raise ValueError(f"mus and gaps must be > 0, got mus={self.mus}, gaps={self.gaps}")
        if self.max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {self.max_delay}")
        if self.grid_points < 2:
            raise ValueError(f"grid_points must be >= 2, got {self.grid_points}")

    def policy_specs(self) -> list[tuple[str, float]]:
        """Every (policy, value) of the config, in POLICY_KINDS order."""
        values = {"earliest": (0.0,), "partial": self.mus, "paper": self.mus, "gap": self.gaps}
        return [(kind, float(v)) for kind in POLICY_KINDS if kind in self.policies for v in values[kind]]

    def gc_policies(self) -> list[tuple[str, float]]:
        """The policies GC runs under. For an s-per-round model ``earliest`` ends every round at
        the (n−s)-th arrival, which no other policy beats in any round (each ends at or after an
        arrival that leaves at most s missing), so the others are left out unless
        ``gc_all_policies`` (they can never be the hindsight best)."""
        specs = self.policy_specs()
        if self.gc_all_policies or "earliest" not in self.policies:
            return specs
        return [("earliest", 0.0)]


def code_load(kind: str, n: int, s: int) -> float:
    """Normalized load of an (n, s) gradient code of ``kind``, as its code object computes it
    (the same float, so the replay's cuts equal the simulator's bit for bit)."""
    if kind == "fr":
        return float(1.0 / (n // (s + 1)))
    if kind == "cyclic":
        return float(np.full(s + 1, 1.0 / n).sum())
    return float(make_gc_code(kind, n, s).load)


def bursty_load(name: str, n: int, W: int, lam: int, kind: str) -> float:
    """Load of (1, W, λ) M-SGC or SR-SGC with D2/GC codes of ``kind``, as the scheme computes it
    (msgc.py: W slots of size x)."""
    if name == "srsgc":
        return code_load(kind, n, srsgc_s(1, W, lam))
    if lam >= n:
        return W * (1.0 / (n * (W - 1)))
    code = code_load(kind, n, lam)
    return W * (code * (1.0 / (n * (W - 1) * code + 1)))


def bursty_lambdas(name: str, n: int, W: int, code_s: np.ndarray) -> np.ndarray:
    """λ values for (1, W, λ) settings whose code redundancies are ``code_s``: M-SGC's D2 code
    has s = λ (and λ = n has no D2 code); SR-SGC's has s = ⌈λ/W⌉, so the largest λ with that s,
    s·W, tolerates the most at its load."""
    if name == "msgc":
        return np.unique(np.append(code_s, n))
    return np.unique(np.minimum(code_s * W, n - 1))


def bursty_pairs(max_delay: int) -> list[tuple[str, int, int]]:
    """(scheme, B, W) with B = 1 and delay at most ``max_delay``: M-SGC (1, W) has T = W−1,
    SR-SGC (1, W) has T = 1 for W = 2, 3 (larger W only tightens its model at the same s)."""
    pairs = [("msgc", 1, W) for W in range(2, max_delay + 2)]
    if max_delay >= 1:
        pairs += [("srsgc", 1, W) for W in (2, 3)]
    return pairs


@dataclass(frozen=True)
class SBlock:
    """s-per-round candidates (uncoded: s = 0): per candidate s, load, policy code, value."""

    s: np.ndarray
    loads: np.ndarray
    policy: np.ndarray
    value: np.ndarray


@dataclass(frozen=True)
class B1Block:
    """(1, W, λ) candidates of one scheme and W: per candidate λ, load, SR-SGC s (or None),
    policy code and value."""

    scheme: str
    W: int
    lams: np.ndarray
    loads: np.ndarray
    srsgc_s: np.ndarray | None
    policy: np.ndarray
    value: np.ndarray


@dataclass(frozen=True)
class CandidateGrid:
    """Every candidate of n workers under a config, in the replay's order: the s block, then
    the bursty blocks; ``index`` maps Candidate.key() to a position."""

    n: int
    s_block: SBlock
    b1_blocks: tuple[B1Block, ...]
    candidates: tuple[Candidate, ...]
    index: dict

    def __len__(self) -> int:
        return len(self.candidates)


def _grid_values(n: int, points: int) -> np.ndarray:
    return np.unique(np.round(np.geomspace(1, n, points)).astype(np.int64))


def tolerances(kind: str, n: int, points: int) -> np.ndarray:
    """The code redundancies s (1 ≤ s < n) a grid tries for codes of ``kind``: about ``points``
    of them, spread geometrically. An FR code's load is 1/⌊n/(s+1)⌋, so among the s with the
    same number of groups g the largest, ⌊n/g⌋ − 1, tolerates the most at the same load: only
    those are tried (the others could never be the best choice)."""
    if kind == "fr":
        groups = _grid_values(max(1, n // 2), points)
        values = np.unique(n // groups - 1)
    else:
        values = _grid_values(n, points)
    return values[(values >= 1) & (values < n)]


@lru_cache(maxsize=32)
def candidate_grid(n: int, cfg: CandidateConfig) -> CandidateGrid:
    cands: list[Candidate] = []
    s_rows: list[tuple[int, float, int, float]] = []
    if "uncoded" in cfg.schemes:
        cands.append(Candidate("uncoded", {}, 0.0, "earliest"))
        s_rows.append((0, 1.0 / n, POLICY_CODE["earliest"], 0.0))
    if "gc" in cfg.schemes:
        for kind in cfg.gc_codes:
            for s in tolerances(kind, n, cfg.grid_points):
                for policy, value in cfg.gc_policies():
                    cands.append(Candidate("gc", {"s": int(s), "gc_code": kind}, value, policy))
                    s_rows.append((int(s), code_load(kind, n, int(s)), POLICY_CODE[policy], value))
    s_arr = np.array(s_rows, dtype=np.float64).reshape(-1, 4)
    s_block = SBlock(s_arr[:, 0].astype(np.int64), s_arr[:, 1], s_arr[:, 2].astype(np.int64), s_arr[:, 3])
    blocks = []
    for name, B, W in bursty_pairs(cfg.max_delay):
        if name not in cfg.schemes:
            continue
        for code in cfg.gc_codes:
            lams = bursty_lambdas(name, n, W, tolerances(code, n, cfg.grid_points))
            rows = []
            for lam in lams:
                load = bursty_load(name, n, W, int(lam), code)
                for policy, value in cfg.policy_specs():
                    params = {"B": B, "W": W, "lam": int(lam), "gc_code": code}
                    cands.append(Candidate(name, params, value, policy))
                    rows.append((int(lam), load, POLICY_CODE[policy], value))
            if rows:
                arr = np.array(rows, dtype=np.float64)
                lam_arr = arr[:, 0].astype(np.int64)
                s_of = np.array([srsgc_s(B, W, int(v)) for v in lam_arr]) if name == "srsgc" else None
                blocks.append(B1Block(name, W, lam_arr, arr[:, 1], s_of, arr[:, 2].astype(np.int64),
                                      arr[:, 3]))
    cands_t = tuple(cands)
    return CandidateGrid(n, s_block, tuple(blocks), cands_t, {c.key(): i for i, c in enumerate(cands_t)})
