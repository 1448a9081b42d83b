"""Adversarial search for the straggler patterns on which decoding is least exact (`gcode verify
--adversarial`), in place of random sampling.

Random sets almost never meet the decode sets on which an ill-conditioned code fails: at
n = 256, s = 40, 2,000 random sets of the paper's cyclic code all decode with an error factor
below 1e-7, while a search finds sets over 1e-6. So, per gradient code of the scheme:

* :func:`worst_straggler_sets` scores a set of s stragglers by the code's *unchecked* decode
  (the decode vector of its usual set, before any budget check): its error factor E and its
  amplification A. A group or FR code is certified, so its worst sets are known exactly (the
  certificate's worst subset per group shape, :meth:`GroupCode.worst_stragglers`). For a cyclic
  code: every contiguous block of s workers and some random sets, then simulated annealing from
  the worst of them on log A (smoother than E, which follows it), moving one straggler at a
  time, mostly to a neighbouring worker.
* :func:`adversarial_patterns` places each set where it alone decides a decode: round 0 for GC
  and SR-SGC (job 0's own round), round W−1 for M-SGC (job 0's first D2 group), no straggler
  otherwise.

:func:`verify_adversarial` runs every pattern through :func:`gcode.sim.verify.run_pattern`:
fp32 partial gradients, messages in the scheme's dtype, and a wait wherever the scheme refuses
a set. A pattern passes when each job decodes within 1e-6 of the exact sum; a refused set is
counted in the report's ``refused_rounds``, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..codes import DecodeError, GradientCode, GroupCode, Scheme
from .verify import VerifyReport, run_pattern


@dataclass(frozen=True)
class Scored:
    error: float          # E of the unchecked decode (inf: singular)
    amplification: float
    stragglers: np.ndarray


def score(code: GradientCode, stragglers: np.ndarray) -> Scored:
    """The unchecked decode of ``~stragglers``: its error factor in the code's dtype, and A."""
    try:
        workers, a = code.unchecked_decode(~stragglers)
    except DecodeError:
        return Scored(math.inf, math.inf, stragglers)
    residual, amplification = code.decode_error(workers, a)
    return Scored(code.error_factor(residual, amplification), amplification, stragglers)


def _anneal(code: GradientCode, start: Scored, steps: int, rng: np.random.Generator) -> Scored:
    """Simulated annealing on log A: move one straggler (to a neighbour ±1 or ±2 with
    probability 0.7, else anywhere); take a move that lowers log A by δ with probability
    exp(−δ/T), T falling linearly from 1 to 0.02. Returns the set of largest E seen. (Pure
    hill-climbing stalls: at n = 256, s = 40 it stops near E = 3e-6, annealing reaches 7e-4.)"""
    current = best = start
    n = code.n
    for step in range(steps):
        mask = current.stragglers.copy()
        moved = rng.choice(np.flatnonzero(mask))
        target = (moved + rng.choice([-2, -1, 1, 2])) % n if rng.random() < 0.7 \
            else rng.choice(np.flatnonzero(~mask))
        if mask[target]:
            continue
        mask[moved], mask[target] = False, True
        candidate = score(code, mask)
        change = math.log(candidate.amplification) - math.log(current.amplification)
        temperature = 1.0 - 0.98 * step / steps
        if change > 0 or rng.random() < math.exp(change / temperature):
            current = candidate
            if candidate.error > best.error:
                best = candidate
    return best


#: annealing runs per code: from the worst contiguous block and the worst random set
CLIMBS = 2


def worst_straggler_sets(code: GradientCode, rng: np.random.Generator, evaluations: int = 2000,
                         keep: int = 4) -> list[Scored]:
    """At most ``keep`` sets of s stragglers whose unchecked decodes have the largest E, worst
    first (module docstring); ``evaluations`` bounds the random sets and climbing steps, beyond
    the n contiguous blocks."""
    n, s = code.n, code.s
    if s == 0:
        return []
    if isinstance(code, GroupCode):
        found = [score(code, mask) for mask in code.worst_stragglers()]
    else:
        blocks = [score(code, np.isin(np.arange(n), (start + np.arange(s)) % n)) for start in range(n)]
        randoms = [score(code, np.isin(np.arange(n), rng.choice(n, s, replace=False)))
                   for _ in range(max(CLIMBS, evaluations // 16))]
        by_amplification = lambda sets: sorted(sets, key=lambda c: -c.amplification)
        starts = by_amplification(blocks)[: CLIMBS // 2] + by_amplification(randoms)[: CLIMBS - CLIMBS // 2]
        steps = max(1, (evaluations - len(randoms)) // CLIMBS)
        found = [_anneal(code, start, steps, rng) for start in starts] + blocks + randoms
    return sorted(found, key=lambda c: -c.error)[:keep]


def decisive_round(scheme: Scheme) -> int:
    """The round whose stragglers alone decide job 0's coded decode set (module docstring)."""
    return scheme.W - 1 if scheme.name == "msgc" else 0


def adversarial_patterns(scheme: Scheme, rng: np.random.Generator, evaluations: int = 2000,
                         keep: int = 4) -> tuple[list[dict[int, np.ndarray]], list[Scored]]:
    """(patterns as {round: stragglers}, the scored sets they came from) for a fresh scheme."""
    found = [c for code in scheme.codes for c in worst_straggler_sets(code, rng, evaluations, keep)]
    r = decisive_round(scheme)
    return [{r: c.stragglers} for c in found], found


def verify_adversarial(make: Callable[[], Scheme], seed: int = 0, evaluations: int = 2000, keep: int = 4,
                       dim: int = 32) -> tuple[VerifyReport, dict]:
    """(report over the adversarial patterns of ``make()``, what the search found)."""
    rng = np.random.default_rng(seed)
    probe = make()
    patterns, found = adversarial_patterns(probe, rng, evaluations, keep)
    none = np.zeros(probe.n, dtype=bool)
    report = VerifyReport(probe.name, probe.params, probe.exact, len(patterns or [{}]), 0, 0, 0.0)
    for pattern in patterns or [{}]:
        scheme = make()
        try:
            d, f, e = run_pattern(scheme, rng, dim, lambda s, r, p=pattern: p.get(r, none))
        except DecodeError:
            d, f, e = 0, 1, math.inf
        report.decoded_jobs += d
        report.failures += f
        report.max_rel_error = max(report.max_rel_error, e)
        report.add_checks(scheme.decode_checks)
    worst = max(found, key=lambda c: c.error, default=None)
    search = {"sets": len(found), "evaluations": evaluations,
              "worst_unchecked_error": worst.error if worst else 0.0,
              "worst_amplification": max((c.amplification for c in found), default=0.0),
              "worst_stragglers": np.flatnonzero(worst.stragglers).tolist() if worst else []}
    return report, search
