"""Numerical verification: run a scheme on random partial gradients under random conforming
straggler patterns and check that every job decodes to the exact sum, in fp64.

Messages are formed as a worker would: Σ coefficient · chunk gradient in fp64, then cast to the
scheme's ``message_dtype``; decoding is a fp64 weighted sum of the received messages. Only the
workers that arrived in a round have messages, so a decode that names a straggler's result fails.

A straggler set that the scheme refuses (its model forbids it, or a decode it settles would miss
the decode error budget) is waited on as the partial-wait policy does: its stragglers arrive,
lowest-numbered first, until the rest conform. The schemes' ``decode_checks`` count the rounds
refused for the budget. Random patterns rarely meet an ill-conditioned code's bad sets;
:mod:`gcode.sim.adversarial` searches for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..codes import DecodeError, Scheme

#: relative error above which an exact scheme's decode counts as a failure
TOLERANCE = 1e-6


@dataclass
class VerifyReport:
    scheme: str
    params: dict
    exact: bool
    patterns: int
    decoded_jobs: int
    failures: int
    max_rel_error: float
    refused_rounds: int = 0    # rounds whose set the scheme refused for the decode error budget
    min_norm_decodes: int = 0  # decodes from a least-norm vector over more workers than usual
    extra_repeats: int = 0     # SR-SGC workers asked to redo a job for the budget

    def add_checks(self, checks: dict) -> None:
        """Add a scheme's ``decode_checks`` counters."""
        self.refused_rounds += checks["refused_rounds"]
        self.min_norm_decodes += checks["min_norm_decodes"]
        self.extra_repeats += checks["extra_repeats"]

    def summary(self) -> dict:
        return dict(self.__dict__)


def random_conforming_stragglers(scheme: Scheme, r: int, rng: np.random.Generator) -> np.ndarray:
    """A random straggler set that ``scheme``'s model allows at round r.

    Each worker is proposed with a probability drawn per round; proposed workers are then dropped
    in random order until the set conforms (the empty set always conforms). Workers that already
    straggled last round are proposed first, so bursts occur.
    """
    n = scheme.n
    previous = scheme.history[-1] if scheme.history else np.zeros(n, dtype=bool)
    proposal = (rng.random(n) < rng.uniform(0.0, 0.6)) | (previous & (rng.random(n) < 0.7))
    order = [w for w in rng.permutation(n) if not previous[w]] + \
            [w for w in rng.permutation(n) if previous[w]]
    for w in order:
        if scheme.conforms(r, proposal):
            break
        proposal[w] = False
    return proposal


def waited(scheme: Scheme, r: int, stragglers: np.ndarray) -> np.ndarray:
    """``stragglers`` less the fewest of them, lowest-numbered first, that the scheme needs
    to arrive before the rest conform (all of them when none does)."""
    stragglers = np.array(stragglers, dtype=bool)
    for worker in np.flatnonzero(stragglers):
        if scheme.conforms(r, stragglers):
            break
        stragglers[worker] = False
    return stragglers


def run_pattern(scheme: Scheme, rng: np.random.Generator, dim: int,
                stragglers_for: Callable[[Scheme, int], np.ndarray]) -> tuple[int, int, float]:
    """Drive ``scheme`` through all its rounds; returns (decoded jobs, failures, max rel error)."""
    chunk_grads: dict[int, np.ndarray] = {}

    def grads_of(job: int) -> np.ndarray:
        if job not in chunk_grads:
            chunks = len(scheme.chunk_fractions_for(job))
            chunk_grads[job] = rng.standard_normal((chunks, dim)).astype(np.float32)
        return chunk_grads[job]

    results: dict[tuple[int, int, int], np.ndarray] = {}
    decoded = failures = 0
    worst = 0.0
    r = 0
    while r < scheme.total_rounds:
        plan = scheme.plan(r)
        stragglers = waited(scheme, r, stragglers_for(scheme, r))
        for worker, tasks in enumerate(plan):
            if stragglers[worker]:
                continue
            for task in tasks:
                grads = grads_of(task.job)[list(task.chunks)].astype(np.float64)
                message = np.asarray(task.coefficients) @ grads
                results[(worker, r, task.slot)] = message.astype(scheme.message_dtype)
        scheme.record(r, ~stragglers)
        for t in range(max(0, r - scheme.delay), r + 1):
            if not scheme.decodable(t):
                continue
            decoding = scheme.decode(t)
            estimate = np.zeros(dim)
            truth = grads_of(t).astype(np.float64).sum(axis=0)
            if all(tuple(key) in results for key, _ in decoding):
                for key, coefficient in decoding:
                    estimate += coefficient * results[tuple(key)].astype(np.float64)
                error = float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))
            else:  # the decode used a result that never arrived
                error = float("inf")
            worst = max(worst, error)
            decoded += 1
            failures += error == float("inf") or (scheme.exact and error > TOLERANCE)
        failures += sum(1 for t in range(max(0, r - scheme.delay), r + 1)
                        if scheme.job_exists(t) and scheme.decode_deadline(t) == r
                        and not scheme.is_decoded(t))
        r += 1
    return decoded, failures, worst


def verify(make: Callable[[], Scheme], patterns: int, seed: int, dim: int = 32,
           progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Run ``patterns`` random conforming patterns through fresh schemes from ``make()``."""
    if patterns < 1:
        raise ValueError(f"patterns must be >= 1, got {patterns}")
    rng = np.random.default_rng(seed)
    decoded = failures = 0
    worst = 0.0
    scheme = None
    checks = []
    for _ in range(patterns):
        scheme = make()
        try:
            d, f, e = run_pattern(scheme, rng, dim, lambda s, r: random_conforming_stragglers(s, r, rng))
        except DecodeError:
            d, f, e = 0, 1, float("inf")
        decoded, failures, worst = decoded + d, failures + f, max(worst, e)
        checks.append(scheme.decode_checks)
        if progress is not None:
            progress(1)
    report = VerifyReport(scheme.name, scheme.params, scheme.exact, patterns, decoded, failures, worst)
    for c in checks:
        report.add_checks(c)
    return report
