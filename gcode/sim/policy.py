"""Round-ending policies, shared by the simulator and the live coordinator.

A policy sets a deadline once the fastest worker of the round has finished. Workers not done by
the deadline are stragglers. If that straggler set conforms to the scheme's model the round ends
at the deadline (or earlier, when everyone is done); otherwise the policy falls back to waiting
for every worker, and the round is recorded straggler-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RoundOutcome:
    arrived: np.ndarray  # bool (n,): results the round used
    duration: float      # seconds from round start to round end
    fell_back: bool      # True when the round waited past the deadline after a model violation


def censored_times(times: np.ndarray, arrived: np.ndarray) -> np.ndarray:
    """What a live coordinator knows of a round's times: arrived workers' own, NaN for the rest."""
    return np.where(np.asarray(arrived, dtype=bool), np.asarray(times, dtype=np.float64), np.nan)


class Policy(ABC):
    name: str
    #: True when a violation waits only until the missing workers conform (not for everyone)
    partial_fallback: bool = False
    #: True when the round ends as soon as the missing workers conform (no deadline at all)
    ends_when_conforming: bool = False
    #: True when the cut is ``deadline(latest arrival)``, moving with every arrival ('gap')
    cut_follows_latest: bool = False

    @abstractmethod
    def deadline(self, fastest: float) -> float:
        """Seconds after the round start at which the round is cut, given the fastest finish."""

    def observe(self, r: int, times: np.ndarray, load: float, end: float,
                compute: np.ndarray | None = None) -> None:
        """Told each finished round's per-worker times, its load and its end (seconds from the
        round's start). ``times`` is the censored view both drivers share: NaN for a worker
        that had not arrived when the round ended, whose time is only known to exceed ``end``.
        ``compute``: the part of each time that grows with the load (a live worker's compute_s),
        censored alike; None when unknown."""

    def observe_late(self, r: int, worker: int, time: float) -> None:
        """Told that ``worker``'s round-r result, cut off when round r ended, has come in after
        all, ``time`` seconds after round r's start (live: a cut worker's late reply)."""

    def resolve(self, times: np.ndarray, conforms: Callable[[np.ndarray], bool]) -> RoundOutcome:
        """The outcome of a round whose per-worker finish times are known (the simulator)."""
        times = np.asarray(times, dtype=np.float64)
        slowest = float(times.max())
        cut = self.deadline(float(times.min()))
        stragglers = times > cut
        if conforms(stragglers):
            return RoundOutcome(~stragglers, min(cut, slowest), False)
        return RoundOutcome(np.ones_like(stragglers), slowest, True)


def _first_conforming(times: np.ndarray, late: np.ndarray, conforms, fell_back: bool) -> RoundOutcome:
    """The round that ends at the j-th arrival of ``late`` (workers in arrival order), for the
    least j ≥ 1 after which the workers still missing, late[j:], conform. Conformance is
    monotone (a subset of a conforming set conforms), so a binary search finds the same j as
    admitting arrivals one by one, with O(log n) checks instead of O(n)."""
    def missing_after(j: int) -> np.ndarray:
        mask = np.zeros(len(times), dtype=bool)
        mask[late[j:]] = True
        return mask

    low, high = 1, len(late)
    while low < high:
        mid = (low + high) // 2
        if conforms(missing_after(mid)):
            high = mid
        else:
            low = mid + 1
    missing = missing_after(low)
    if not conforms(missing):
        raise AssertionError("the empty straggler set always conforms")
    return RoundOutcome(~missing, float(times[late[low - 1]]), fell_back)


@dataclass(frozen=True)
class PaperPolicy(Policy):
    """The paper's rule: stragglers are workers slower than (1+μ)·fastest."""

    mu: float = 1.0
    name = "paper"

    def __post_init__(self):
        if not self.mu > 0:
            raise ValueError(f"mu must be > 0, got mu={self.mu}")

    def deadline(self, fastest):
        return fastest * (1 + self.mu)


@dataclass(frozen=True)
class PartialWaitPolicy(PaperPolicy):
    """The paper's deadline, but on a model violation wait only until the workers still missing
    form a conforming set, instead of waiting for everyone.

    Conformance is monotone (a subset of a conforming set conforms), so stopping at the first
    arrival after which the missing set conforms is the earliest possible end. The recorded
    stragglers conform, so the scheme's decoding guarantee holds exactly as in the paper policy.
    """

    name = "partial"
    partial_fallback = True

    def resolve(self, times, conforms):
        times = np.asarray(times, dtype=np.float64)
        cut = self.deadline(float(times.min()))
        missing = times > cut
        if conforms(missing):
            return RoundOutcome(~missing, min(cut, float(times.max())), False)
        order = np.argsort(times, kind="stable")
        return _first_conforming(times, order[missing[order]], conforms, fell_back=True)


@dataclass(frozen=True)
class EarliestPolicy(Policy):
    """End the round the moment the workers still missing form a set the scheme's model allows
    (for GC: at the (n−s)-th arrival), and never before the first arrival. There is no deadline
    to miss, so no round counts as a wait. The recorded stragglers conform, so decoding is as
    guaranteed as under the paper policy."""

    name = "earliest"
    partial_fallback = True
    ends_when_conforming = True

    def deadline(self, fastest):
        return fastest

    def resolve(self, times, conforms):
        times = np.asarray(times, dtype=np.float64)
        return _first_conforming(times, np.argsort(times, kind="stable"), conforms, fell_back=False)


@dataclass(frozen=True)
class GapPolicy(Policy):
    """End the round once no worker has arrived for ``gap`` × the latest arrival's time and the
    workers still missing form a set the scheme's model allows (or when everyone has arrived).

    It is the paper's rule with the cut measured from the latest arrival instead of the fastest:
    a worker is a straggler when it trails the worker before it by more than that gap. Workers
    that arrive as one cluster, however wide, are never cut from it, so a sequential scheme does
    not spend its (B, W, λ) window's stragglers on workers that trail by a hair, as ``earliest``
    does. A gap at which the missing set does not conform makes the round a wait; it goes on to
    the next gap. The recorded stragglers conform, so decoding is as guaranteed as under the
    paper policy.
    """

    gap: float = 0.05
    name = "gap"
    partial_fallback = True
    cut_follows_latest = True

    def __post_init__(self):
        if not self.gap > 0:
            raise ValueError(f"gap must be > 0, got gap={self.gap}")

    def deadline(self, latest):
        return latest * (1 + self.gap)

    def resolve(self, times, conforms):
        times = np.asarray(times, dtype=np.float64)
        order = np.argsort(times, kind="stable")
        arrival = times[order]
        cuts = self.deadline(arrival[:-1])
        fell_back = False
        for j in np.flatnonzero(arrival[1:] > cuts):  # the gaps: no arrival until the cut
            missing = np.zeros(len(times), dtype=bool)
            missing[order[j + 1:]] = True
            if conforms(missing):
                return RoundOutcome(~missing, float(cuts[j]), fell_back)
            fell_back = True
        return RoundOutcome(np.ones(len(times), dtype=bool), float(arrival[-1]), fell_back)


@dataclass(frozen=True)
class DeadlinePolicy(Policy):
    """A fixed deadline in seconds after the round start."""

    seconds: float
    name = "deadline"

    def __post_init__(self):
        if not self.seconds > 0:
            raise ValueError(f"deadline seconds must be > 0, got {self.seconds}")

    def deadline(self, fastest):
        return self.seconds


@dataclass(frozen=True)
class WaitAllPolicy(Policy):
    """Wait for every worker every round (no stragglers are ever declared)."""

    name = "all"

    def deadline(self, fastest):
        return float("inf")


POLICIES = ("paper", "partial", "earliest", "gap", "deadline", "all")


def make_policy(name: str, mu: float = 1.0, deadline_s: float | None = None,
                gap: float = 0.05) -> Policy:
    if name == "paper":
        return PaperPolicy(mu)
    if name == "partial":
        return PartialWaitPolicy(mu)
    if name == "deadline":
        if deadline_s is None:
            raise ValueError("policy 'deadline' needs deadline_s (--deadline SECONDS)")
        return DeadlinePolicy(deadline_s)
    if name == "all":
        return WaitAllPolicy()
    if name == "earliest":
        return EarliestPolicy()
    if name == "gap":
        return GapPolicy(gap)
    raise ValueError(f"unknown policy {name!r}; valid: {', '.join(POLICIES)}")
