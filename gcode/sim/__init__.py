"""Trace-driven simulation: policies, the simulator, the vectorized tuner and the verifier."""

from .policy import (
                     POLICIES,
                     DeadlinePolicy,
                     EarliestPolicy,
                     GapPolicy,
                     PaperPolicy,
                     PartialWaitPolicy,
                     Policy,
                     RoundOutcome,
                     WaitAllPolicy,
                     make_policy,
)
from .simulator import SimResult, simulate, worker_times

__all__ = ["POLICIES", "DeadlinePolicy", "EarliestPolicy", "GapPolicy", "PaperPolicy",
           "PartialWaitPolicy", "Policy", "RoundOutcome", "SimResult", "WaitAllPolicy", "make_policy",
           "simulate", "worker_times"]
