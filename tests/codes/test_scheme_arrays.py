"""Plans, arrivals and decodings held as arrays (issue 15) against the per-worker state machines
they replaced (tests/codes/reference_schemes.py), round by round: the same plans, model checks,
decodability and decodings under random conforming patterns, fallbacks and late results."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_schemes import dense_decode, reference_of

from gcode.codes import (
    CyclicRepetitionCode,
    Decoding,
    FractionalRepetitionCode,
    GradientCoding,
    MiniTask,
    Plan,
    ResultKey,
    TaskBlock,
    make_gc_code,
    make_scheme,
)
from gcode.sim import PaperPolicy, simulate
from gcode.sim.verify import random_conforming_stragglers, verify

CASES = [
    ("uncoded", 7, {}), ("ignore", 7, {"s": 2}),
    ("gc", 8, {"s": 2, "gc_code": "fr"}), ("gc", 7, {"s": 2, "gc_code": "cyclic"}),
    ("gc", 7, {"s": 2, "gc_code": "group"}), ("gc", 11, {"s": 3, "gc_code": "group"}),
    ("srsgc", 8, {"B": 2, "W": 3, "lam": 3, "gc_code": "cyclic"}),
    ("srsgc", 9, {"B": 1, "W": 2, "lam": 4, "gc_code": "fr"}),
    ("srsgc", 8, {"B": 2, "W": 4, "lam": 3, "gc_code": "fr"}),  # B does not divide W-1
    ("srsgc", 9, {"B": 1, "W": 2, "lam": 5, "gc_code": "group"}),
    ("msgc", 8, {"B": 1, "W": 2, "lam": 3, "gc_code": "cyclic"}),
    ("msgc", 7, {"B": 2, "W": 3, "lam": 2, "gc_code": "fr"}),
    ("msgc", 6, {"B": 1, "W": 3, "lam": 6}),  # lam = n: no D2 code
    ("msgc", 8, {"B": 2, "W": 4, "lam": 3, "gc_code": "cyclic"}),
    ("msgc", 9, {"B": 1, "W": 2, "lam": 3, "gc_code": "group"}),
]


def drive_both(scheme, rng, rounds=None, coefficient_rtol=0.0):
    """Drive ``scheme`` and its reference through the same rounds; assert they agree."""
    ref = reference_of(scheme)
    n = scheme.n
    for r in range(scheme.total_rounds if rounds is None else rounds):
        plan, ref_plan = scheme.plan(r), ref.plan(r)
        assert isinstance(plan, Plan) and plan == ref_plan
        assert [plan[w] for w in range(n)] == ref_plan
        assert plan.has_tasks == any(ref_plan)
        if rng.random() < 0.75:
            stragglers = random_conforming_stragglers(scheme, r, rng)
        else:
            stragglers = rng.random(n) < 0.4
        ok = scheme.conforms(r, stragglers)
        assert ok == ref.conforms(r, stragglers)
        if not ok:
            stragglers = np.zeros(n, dtype=bool)
        scheme.record(r, ~stragglers)
        ref.record(r, ~stragglers)
        assert np.array_equal(scheme.counted[-1], ref.counted[-1])
        for _ in range(2):  # late results of a recent round
            rr = int(rng.integers(max(0, r - scheme.delay - 1), r + 1))
            late = np.flatnonzero(scheme.history[rr])
            if len(late):
                w = int(rng.choice(late))
                scheme.accept_late(rr, w)
                ref.accept_late(rr, w)
        for t in range(max(0, r - scheme.delay), r + 1):
            assert scheme.decodable(t) == ref.decodable(t), (r, t)
            if scheme.decodable(t):
                got, want = scheme.decode(t), ref.decode(t)
                assert isinstance(got, Decoding) and [k for k, _ in got] == [k for k, _ in want]
                rtol = coefficient_rtol or (1e-9 if any(c.kind == "group" for c in scheme.codes) else 0.0)
                if rtol:  # solved (or, for the group code, closed-form) against the reference's lstsq
                    np.testing.assert_allclose(got.coefficients, [c for _, c in want], rtol=rtol, atol=rtol)
                else:
                    assert list(got) == want


@pytest.mark.parametrize("name,n,params", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_array_schemes_match_the_per_worker_state_machines(name, n, params, seed):
    drive_both(make_scheme(name, n=n, jobs=12, **params), np.random.default_rng(seed))


@pytest.mark.parametrize("name,params", [("gc", {"s": 4}), ("msgc", {"B": 1, "W": 2, "lam": 3}),
                                         ("srsgc", {"B": 1, "W": 2, "lam": 6})])
def test_array_schemes_match_beyond_the_dense_cyclic_decode(name, params):
    params = {**params, "gc_code": "cyclic"}
    """n = 300 > DENSE_DECODE_MAX_N: cyclic decode vectors come from the banded solve, equal to
    the dense QR's to rounding."""
    drive_both(make_scheme(name, n=300, jobs=6, **params), np.random.default_rng(5), rounds=5,
               coefficient_rtol=1e-7)


@pytest.mark.parametrize("n,s", [(7, 2), (12, 3), (40, 6), (300, 5)])
def test_cyclic_rows_are_the_dense_construction(n, s):
    """Rows solved in batches equal the original one-row-at-a-time dense construction."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((s, n))
    h[:, -1] = -h[:, :-1].sum(axis=1)
    enc = np.zeros((n, n))
    for i in range(n):
        support = [(i + k) % n for k in range(1, s + 1)]
        enc[i, i] = 1.0
        enc[i, support] = -np.linalg.solve(h[:, support], h[:, i])
    code = CyclicRepetitionCode(n, s)
    assert code.encoding.tobytes() == enc.tobytes()
    for w in (0, n - 1):
        parts, coefficients = code.row(w)
        assert parts.tolist() == np.flatnonzero(enc[w]).tolist()
        assert coefficients.tolist() == enc[w, parts].tolist()


def test_banded_cyclic_decode_matches_the_dense_solve(monkeypatch):
    rng = np.random.default_rng(1)
    for n, s in [(7, 2), (9, 4), (64, 5)]:
        dense = CyclicRepetitionCode(n, s)
        monkeypatch.setattr(CyclicRepetitionCode, "DENSE_DECODE_MAX_N", 0)
        banded = CyclicRepetitionCode(n, s)  # certifies every decode set with the banded solve
        monkeypatch.undo()
        for _ in range(20):
            arrived = np.ones(n, dtype=bool)
            arrived[rng.choice(n, int(rng.integers(0, s + 1)), replace=False)] = True
            arrived[rng.choice(n, s, replace=False)] = False
            workers, a = banded.decode_vector(arrived)
            dense_workers, dense_a = dense.decode_vector(arrived)
            assert workers.tolist() == dense_workers.tolist()
            np.testing.assert_allclose(a, dense_a, rtol=1e-8, atol=1e-8)
            assert np.abs(a @ banded.encoding[workers] - 1).max() < 1e-8


def test_banded_cyclic_decode_is_exact_under_verify():
    report = verify(lambda: make_scheme("gc", n=320, jobs=3, s=6), patterns=2, seed=0, dim=8)
    assert report.failures == 0 and report.max_rel_error <= 1e-6


def test_fr_decode_vector_is_the_first_finished_member_per_group():
    code = FractionalRepetitionCode(11, 2)
    rng = np.random.default_rng(2)
    for _ in range(50):
        arrived = rng.random(11) < 0.7
        if not code.decodable(arrived):
            continue
        workers, a = code.decode_vector(arrived)
        assert dict(zip(workers.tolist(), a.tolist())) == dense_decode(code, np.flatnonzero(arrived))


@pytest.mark.parametrize("code", [
    CyclicRepetitionCode(9, 3), FractionalRepetitionCode(9, 2),
    CyclicRepetitionCode(3, 1, encoding=[[0.5, 1, 0], [0, 1, -1], [0.5, 0, 1]])])
def test_support_sums_are_the_sums_over_each_workers_parts(code):
    values = np.arange(1, code.num_parts + 1) ** 2
    assert code.support_sums(values).tolist() == [int(values[code.support(w)].sum()) for w in range(code.n)]


def test_plan_reads_like_a_list_of_per_worker_task_lists():
    code = FractionalRepetitionCode(4, 1)
    on = np.array([True, False, True, True])
    plan = Plan(4, [TaskBlock(3, 0, on, chunk=np.arange(4)),
                    TaskBlock(2, 1, ~on | on, code=code, chunk_offset=10),
                    TaskBlock(9, 2, np.zeros(4, dtype=bool), chunk=np.arange(4))])
    assert len(plan) == 4 and plan.has_tasks and len(plan.blocks) == 2
    assert plan[1] == [MiniTask(2, 1, (10,), (1.0,))]
    assert plan[-1] == [MiniTask(3, 0, (3,), (1.0,)), MiniTask(2, 1, (11,), (1.0,))]
    assert plan[0] is plan[0]  # built once
    assert plan[1:3] == [plan[1], plan[2]]
    assert plan.task_counts().tolist() == [2, 1, 2, 2]
    assert plan.shifted(5, 1000)[1] == [MiniTask(7, 1001, (10,), (1.0,))]
    assert not Plan(4, []).has_tasks and Plan(4, []) == [[], [], [], []]
    with pytest.raises(IndexError):
        plan[4]


def test_decodings_read_like_lists_of_keys_and_coefficients():
    d = Decoding([2, 0], [5, 6], 1, [0.5, 2.0])
    assert list(d) == [(ResultKey(2, 5, 1), 0.5), (ResultKey(0, 6, 1), 2.0)]
    assert d == [(ResultKey(2, 5, 1), 0.5), (ResultKey(0, 6, 1), 2.0)] and len(d) == 2
    assert d.shifted(10, 100)[1] == (ResultKey(0, 16, 101), 2.0)
    joined = Decoding.concat([d, Decoding.from_pairs([(ResultKey(1, 1, 1), 3.0)])])
    assert joined[2] == (ResultKey(1, 1, 1), 3.0)


def test_the_simulator_never_solves_a_certified_decode(monkeypatch):
    """Decodings are deferred: a simulated certified code never computes a decode vector (an
    uncertified one solves each decode set, to check it: tests/codes/test_adversarial.py)."""
    code = make_gc_code("group", 400, 30)
    monkeypatch.setattr(code, "decode_vector", lambda arrived: pytest.fail("solved a decode"))
    scheme = GradientCoding(400, 30, jobs=6, code=code)
    trace = np.random.default_rng(0).uniform(1.0, 3.0, (6, 400))
    result = simulate(scheme, trace, PaperPolicy(1.0))
    assert result.decoded_jobs == 6 and code.certified


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(CyclicRepetitionCode.DENSE_DECODE_MAX_N + 1, 200), scheme=st.sampled_from([
    ("gc", {"s": 3}), ("msgc", {"B": 1, "W": 2, "lam": 3}), ("srsgc", {"B": 1, "W": 2, "lam": 4})]),
    seed=st.integers(0, 2**16))
def test_plans_and_decodings_match_between_the_dense_limit_and_n_200(n, scheme, seed):
    """Plans built block by block, and cyclic decode vectors from the refined null space (or the
    banded LU), agree with the per-worker reference and its dense QR round by round."""
    name, params = scheme
    drive_both(make_scheme(name, n=n, jobs=5, gc_code="cyclic", **params), np.random.default_rng(seed),
               rounds=5, coefficient_rtol=1e-7)
