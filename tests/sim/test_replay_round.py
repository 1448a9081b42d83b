"""The simulator's event-driven round (``replay_round``, the live ``decide`` on a virtual clock)
against ``Policy.resolve``, and the simulator's dispatch at arrival."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcode.codes import make_scheme
from gcode.sim import make_policy, simulate
from gcode.sim.rounds import replay_round

POLICY_ARGS = [("paper", {"mu": 1.0}), ("paper", {"mu": 0.2}), ("partial", {"mu": 0.1}),
               ("earliest", {}), ("gap", {"gap": 0.05}), ("gap", {"gap": 0.3}),
               ("deadline", {"deadline_s": 1.5}), ("all", {})]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 12), s=st.integers(0, 4), which=st.sampled_from(POLICY_ARGS),
       seed=st.integers(0, 2**16))
def test_without_head_starts_the_replay_is_the_policys_resolve(n, s, which, seed):
    """Distinct times: at a tie the replay admits every worker of that instant at once, as the
    live loop does, where ``resolve``'s partial wait admits them one by one (next test)."""
    rng = np.random.default_rng(seed)
    times = rng.exponential(1.0, n) + 0.1
    name, kwargs = which
    policy = make_policy(name, **kwargs)
    conforms = lambda stragglers: int(stragglers.sum()) <= s  # monotone, like every model
    expected = policy.resolve(times, conforms)
    arrived, end, fell_back = replay_round(policy, times, np.zeros(n), conforms)
    assert arrived.tolist() == expected.arrived.tolist()
    assert end == pytest.approx(expected.duration)
    assert fell_back == expected.fell_back


def test_arrivals_at_one_instant_are_admitted_together():
    times = np.array([0.9, 1.2, 0.2, 0.2, 0.8, 1.8, 0.9])
    policy, conforms = make_policy("partial", mu=0.1), lambda m: int(m.sum()) <= 3
    assert not policy.resolve(times, conforms).arrived[6]  # one by one: 0 ends the wait
    arrived, end, _ = replay_round(policy, times, np.zeros(7), conforms)
    assert arrived.tolist() == [True, False, True, True, True, False, True] and end == 0.9


def test_a_head_start_is_timed_on_the_workers_own_clock():
    """Worker 0 started 1 s early; its 1.5 s task arrives at 0.5 s on the round's clock. The
    paper cut, 2 × the fastest task time (1.0 s, worker 1), is reached by worker 2 (started on
    time) at 2.0 s: it is cut then, 3.0 s being its time."""
    times, head = np.array([1.5, 1.0, 3.0]), np.array([1.0, 0.0, 0.0])
    arrived, end, fell_back = replay_round(make_policy("paper"), times, head, lambda m: m.sum() <= 1)
    assert arrived.tolist() == [True, True, False] and end == 2.0 and not fell_back


def test_simulated_dispatch_at_arrival_starts_workers_at_their_arrival():
    """Uncoded (waits for all): worker 0 always takes 1 s, worker 1 2 s. Round dispatch: every
    round lasts 2 s. At arrival: worker 0 starts each next round 1 s early, which it cannot use
    (it waits for worker 1 anyway), so rounds still last 2 s. When the slow worker alternates,
    the fast one's head start covers the next round's longer task: 2 + 1 + 2 + 1 s."""
    steady = np.tile([1.0, 2.0], (4, 1))
    for dispatch in ("round", "arrival"):
        res = simulate(make_scheme("uncoded", n=2, jobs=4), steady, make_policy("all"),
                       dispatch=dispatch)
        assert res.runtime_s == pytest.approx(8.0)
    alternating = np.array([[1.0, 2.0], [2.0, 1.0], [1.0, 2.0], [2.0, 1.0]])
    by_round = simulate(make_scheme("uncoded", n=2, jobs=4), alternating, make_policy("all"))
    at_arrival = simulate(make_scheme("uncoded", n=2, jobs=4), alternating, make_policy("all"),
                          dispatch="arrival")
    assert by_round.runtime_s == pytest.approx(8.0)
    # round 0 ends at 2 (worker 0 free since 1); round 1: worker 0 (2 s, head 1) arrives at 1,
    # worker 1 (1 s) at 1, so it ends at 1 with no head start left; rounds 2 and 3 repeat that
    assert at_arrival.runtime_s == pytest.approx(6.0)
    assert at_arrival.durations == pytest.approx([2.0, 1.0, 2.0, 1.0])


def test_simulated_head_start_is_at_most_one_round():
    """Live, round r+1's tasks go out during round r at the earliest, so a worker that is
    ahead by more than a round waits for round r to begin: worker 0 (1 s a round) starts each
    next round when the round begins, 10 s ahead, never more. So round 4's 20 s task ends at
    10, not at 20 - 36 (the head start a worker could pile up if it ran ahead freely)."""
    trace = np.array([[1.0, 10.0]] * 4 + [[20.0, 1.0]])
    res = simulate(make_scheme("uncoded", n=2, jobs=5), trace, make_policy("all"),
                   dispatch="arrival")
    assert res.durations == pytest.approx([10.0, 10.0, 10.0, 10.0, 10.0])


def test_simulated_dispatch_at_arrival_decodes_every_job_of_msgc():
    rng = np.random.default_rng(0)
    trace = rng.exponential(1.0, (30, 8)) + 0.5
    res = simulate(make_scheme("msgc", n=8, jobs=20, B=1, W=2, lam=2, gc_code="fr"), trace,
                   make_policy("gap", gap=0.1), dispatch="arrival")
    assert res.decoded_jobs == 20


def test_simulated_dispatch_at_arrival_refuses_srsgc():
    with pytest.raises(ValueError, match="srsgc is not one"):
        simulate(make_scheme("srsgc", n=8, jobs=4, B=1, W=2, lam=2, gc_code="fr"),
                 np.ones((10, 8)), make_policy("paper"), dispatch="arrival")
