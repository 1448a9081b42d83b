"""The trace-driven simulator: drives a scheme state machine through per-worker round times."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..codes import DecodeError, Plan, Scheme
from .load_model import LoadModel
from .policy import Policy, RoundOutcome, censored_times
from .rounds import replay_round


@dataclass
class SimResult:
    scheme: str
    params: dict
    n: int
    jobs: int
    load: float
    delay_T: int
    runtime_s: float
    rounds: int
    waits: int
    decoded_jobs: int
    durations: list[float] = field(repr=False)
    stragglers: np.ndarray = field(repr=False)  # (rounds, n) recorded straggler masks
    task_rounds: int = 0  # rounds in which some worker had a task (a tail round costs nothing)
    #: the scheme's ``decode_checks``: rounds refused for a decode over the error budget, ...
    decode_checks: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"scheme": self.scheme, "params": self.params, "n": self.n, "jobs": self.jobs,
                "load": self.load, "delay_T": self.delay_T, "runtime_s": self.runtime_s,
                "rounds": self.rounds, "waits": self.waits, "decoded_jobs": self.decoded_jobs,
                "decode_checks": self.decode_checks}


def check_trace(trace: np.ndarray, n: int, rounds: int) -> None:
    """Raise ValueError unless ``trace`` is (≥ rounds, ≥ n); extra columns are ignored."""
    if trace.ndim != 2:
        raise ValueError(f"trace must be a 2-D (rounds, workers) array, got shape {trace.shape}")
    if trace.shape[1] < n:
        raise ValueError(f"trace has {trace.shape[1]} workers (columns), scheme needs n={n}")
    if trace.shape[0] < rounds:
        raise ValueError(f"trace has {trace.shape[0]} rounds, the run needs {rounds} "
                         f"(jobs + delay T); lower --jobs")


def worker_times(trace: np.ndarray, n: int, rounds: int, load: float,
                 load_slope: float | LoadModel, time_scale: float = 1.0) -> np.ndarray:
    """Per-worker round times (rounds, n) at ``load``: by default trace·time_scale + load·slope;
    ``load_slope`` may be a :class:`LoadModel` instead of the additive slope.

    A trace with more columns than workers contributes its first n columns.
    """
    trace = np.asarray(trace, dtype=np.float64)
    check_trace(trace, n, rounds)
    return LoadModel.of(load_slope).times(trace[:rounds, :n] * time_scale, load)


def has_tasks(plan) -> bool:
    """Whether any worker has a task in ``plan`` (a :class:`Plan`, or per-worker lists)."""
    return plan.has_tasks if isinstance(plan, Plan) else any(plan)


def simulate(scheme: Scheme, trace: np.ndarray, policy: Policy,
             load_slope: float | LoadModel = 0.0, time_scale: float = 1.0,
             on_round: Callable[[int, np.ndarray, object, list[int]], None] | None = None,
             dispatch: str = "round") -> SimResult:
    """Run ``scheme`` for scheme.jobs jobs over ``trace``; every job must decode by t + T.

    ``dispatch="arrival"`` models the live ``train.dispatch = "arrival"``: a worker that
    arrived in round r starts round r+1 at its arrival, not at round r's end (but not before
    round r itself began: tasks go out one round ahead at most), and every round
    is resolved on each worker's own clock (:func:`gcode.sim.rounds.replay_round`). It assumes
    every round may start early (live: M ≥ T+2) and needs ``scheme.plans_from_own_arrivals``.

    ``load_slope``: seconds per unit load (the additive model), or a :class:`LoadModel`.

    A round in which no worker has a task (a delayed scheme's tail) is skipped: zero duration.
    ``on_round(r, times, outcome, decoded_jobs)`` is called after each round (for run logs;
    ``times`` are NaN in a skipped round).
    The policy also observes each round's times (``Policy.observe``) as a live coordinator sees
    them, censored at the round's end (:func:`censored_times`), and a cut worker's time once
    the run's clock passes its finish (``Policy.observe_late``), with the part of each time that
    grows with the load (a live worker's compute time: load·slope for the additive model, all
    of it for the proportional one), which lets an online tuner fit the load model and adapt
    the scheme between rounds.
    """
    trace = np.asarray(trace, dtype=np.float64)
    load_model = LoadModel.of(load_slope)
    if scheme.jobs is None:
        raise ValueError("simulate needs a scheme built with a finite number of jobs")
    if dispatch not in ("round", "arrival"):
        raise ValueError(f"dispatch must be 'round' or 'arrival', got {dispatch!r}")
    if dispatch == "arrival" and not scheme.plans_from_own_arrivals:
        raise ValueError(f"dispatch 'arrival' needs a scheme whose workers' next tasks follow "
                         f"their own arrivals; {scheme.name} is not one")
    durations, waits, decoded, task_rounds = [], 0, 0, 0
    head = np.zeros(scheme.n)  # seconds each worker started before the round (dispatch=arrival)
    late: list[tuple[float, int, int, float]] = []  # (clock, round, worker, time) of cut workers
    clock = 0.0
    r = 0
    while r < scheme.total_rounds:  # an adaptive scheme may extend its rounds as it switches
        check_trace(trace, scheme.n, scheme.total_rounds)
        load = scheme.round_load(r)
        base = trace[r, :scheme.n] * time_scale
        times = load_model.times(base, load)
        if not has_tasks(scheme.plan(r)):  # a tail round with no task: nothing runs, it costs nothing
            times = np.full(scheme.n, np.nan)
            outcome = RoundOutcome(np.ones(scheme.n, dtype=bool), 0.0, False)
            scheme.record(r, outcome.arrived)
            head[:] = 0.0
        else:
            task_rounds += 1
            conforms = lambda stragglers, r=r: scheme.conforms(r, stragglers)
            head_before = head.copy()
            if dispatch == "arrival":
                outcome = RoundOutcome(*replay_round(policy, times, head, conforms))
                # an arrival before the round's own start (a worker ahead by more than a round)
                # starts the next round only at that start, when the round becomes current
                finish = np.maximum(times - head, 0.0)
                head = np.where(outcome.arrived, outcome.duration - finish, 0.0)
            else:
                outcome = policy.resolve(times, conforms)
            scheme.record(r, outcome.arrived)
            compute = censored_times(times - load_model.times(base, 0.0), outcome.arrived)
            late = _deliver_late(policy, late, clock + outcome.duration)  # they came in this round
            policy.observe(r, censored_times(times, outcome.arrived), load, outcome.duration,
                           compute=compute)
            late += [(clock + times[w] - head_before[w], r, int(w), float(times[w]))
                     for w in np.flatnonzero(~outcome.arrived)]
        clock += outcome.duration
        late = _deliver_late(policy, late, clock)
        durations.append(outcome.duration)
        waits += outcome.fell_back
        newly = [t for t in range(max(0, r - scheme.delay), r + 1) if scheme.decodable(t)]
        for t in newly:
            scheme.decode(t)
        decoded += len(newly)
        for t in range(max(0, r - scheme.delay), r + 1):
            if scheme.job_exists(t) and scheme.decode_deadline(t) == r and not scheme.is_decoded(t):
                raise DecodeError(f"{scheme.name}: job {t} not decodable at its deadline round {r}")
        if on_round is not None:
            on_round(r, times, outcome, newly)
        r += 1
    return SimResult(scheme.name, scheme.params, scheme.n, scheme.jobs, scheme.load, scheme.delay,
                     float(np.sum(durations)), r, waits, decoded, durations,
                     np.array(scheme.history), task_rounds, scheme.decode_checks)


def _deliver_late(policy: Policy, late: list, clock: float) -> list:
    """Hand the policy every cut worker's result finished by ``clock`` (in finish order); the
    rest stay pending."""
    for item in sorted(x for x in late if x[0] <= clock):
        policy.observe_late(*item[1:])
    return [x for x in late if x[0] > clock]
