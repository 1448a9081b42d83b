"""Unit tests of the gradient codes and scheme state machines, incl. SCHEMES.md worked examples."""

import math
import subprocess
import sys

import numpy as np
import pytest

from gcode.codes import (
    Bursty,
    CyclicRepetitionCode,
    DecodeError,
    FractionalRepetitionCode,
    SPerRound,
    allocate_samples,
    chunk_boundaries,
    make_gc_code,
    make_scheme,
    srsgc_s,
)
from gcode.codes.loads import gc_load, msgc_load, samples_per_job_for_exact_msgc, srsgc_load


def test_codes_package_imports_neither_ray_nor_torch():
    code = "import sys, gcode.codes, gcode.sim; print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_tandon_worked_example_n3_s1():
    code = CyclicRepetitionCode(3, 1, encoding=[[0.5, 1, 0], [0, 1, -1], [0.5, 0, 1]])
    expected = {(0, 1): (2, -1), (0, 2): (1, 1), (1, 2): (1, 2)}
    for finished, coefficients in expected.items():
        a = code.decode_coefficients(frozenset(finished))
        assert [a[w] for w in finished] == pytest.approx(coefficients, abs=1e-12)


@pytest.mark.parametrize("n,s", [(4, 1), (6, 2), (7, 2), (10, 3), (9, 0)])
def test_fr_code_decodes_with_one_member_per_group(n, s):
    code = FractionalRepetitionCode(n, s)
    assert all(len(g) >= s + 1 for g in code.groups)
    assert code.load == pytest.approx(1 / (n // (s + 1)))
    a = code.decode_coefficients(frozenset(range(s, n)))
    assert np.allclose(sum(c * code.encoding[w] for w, c in a.items()), 1.0)
    with pytest.raises(DecodeError):
        code.decode_coefficients(frozenset(code.groups[0][1:].tolist()))


def test_cyclic_code_support_load_and_conditioning():
    code = make_gc_code("cyclic", 12, 3)
    assert all(len(code.support(i)) == 4 for i in range(12))
    assert code.load == pytest.approx(4 / 12)
    assert np.allclose(code.encoding.sum(axis=0) @ np.zeros(12), 0)
    big = make_gc_code("cyclic", 256, 27)
    assert big.message_dtype == np.float64  # random-H cyclic code at n=256 is ill-conditioned
    assert FractionalRepetitionCode(256, 27).message_dtype == np.float32


def test_cyclic_decode_rejects_too_few_workers():
    code = make_gc_code("cyclic", 6, 2)
    with pytest.raises(DecodeError, match="needs 4"):
        code.decode_coefficients(frozenset({0, 1, 2}))


@pytest.mark.parametrize("B,W,lam,expected", [(1, 2, 27, 14), (2, 3, 23, 12), (2, 3, 2, 1),
                                              (2, 4, 3, 2), (3, 5, 6, 3)])
def test_srsgc_s_formula_and_safe_variant(B, W, lam, expected):
    assert srsgc_s(B, W, lam) == expected
    if (W - 1) % B == 0:
        assert srsgc_s(B, W, lam) == math.ceil(B * lam / (W - 1 + B))


def test_loads_at_n256_match_the_paper_table():
    cyclic = "cyclic"  # the paper's code
    assert gc_load(256, 27, cyclic) == pytest.approx(0.1094, abs=5e-5)
    assert srsgc_load(256, 1, 2, 27, cyclic) == pytest.approx(0.0586, abs=5e-5)
    assert msgc_load(256, 1, 2, 27, cyclic) == pytest.approx(0.00754, abs=5e-6)
    assert gc_load(256, 23, cyclic) == pytest.approx(0.0938, abs=5e-5)
    assert srsgc_load(256, 2, 3, 23, cyclic) == pytest.approx(0.0508, abs=5e-5)
    assert msgc_load(256, 2, 3, 23, cyclic) == pytest.approx(0.0075, abs=5e-5)
    for B, W, lam in [(1, 2, 27), (2, 3, 23), (1, 3, 256)]:
        for code in ("cyclic", "group", "fr"):
            assert make_scheme("msgc", n=256, B=B, W=W, lam=lam, gc_code=code).load == \
                pytest.approx(msgc_load(256, B, W, lam, code))
    assert samples_per_job_for_exact_msgc(256, 1, 2, 27) == 7424


def test_msgc_worked_example_sizes():
    scheme = make_scheme("msgc", n=4, B=2, W=3, lam=2)
    assert scheme.x == pytest.approx(3 / 32) and scheme.y == pytest.approx(1 / 8)
    assert scheme.delay == 3
    # SCHEMES.md prints L = 3x = 9/32 for this example, but each round has W-1+B = 4 slots of
    # size x, and its own load formula gives 4x = 3/8; gcode follows the formula.
    assert scheme.load == pytest.approx(4 * 3 / 32) == msgc_load(4, 2, 3, 2)
    assert scheme.chunk_fractions.sum() == pytest.approx(1.0)


def _drive(scheme, straggler_rounds):
    """Run all rounds with the given {round: stragglers}; returns {job: decode round, workers}."""
    decoded = {}
    for r in range(scheme.total_rounds):
        scheme.plan(r)
        stragglers = np.zeros(scheme.n, dtype=bool)
        stragglers[list(straggler_rounds.get(r, ()))] = True
        assert scheme.conforms(r, stragglers)
        scheme.record(r, ~stragglers)
        for t in range(max(0, r - scheme.delay), r + 1):
            if scheme.decodable(t):
                decoded[t] = (r, scheme.decode(t))
    return decoded


def test_srsgc_worked_example_n4():
    scheme = make_scheme("srsgc", n=4, jobs=4, B=2, W=3, lam=2)
    assert scheme.s == 1 and scheme.load == 0.5
    stragglers = {0: (0, 1), 1: (0, 1)}
    plans = {}
    original_plan = scheme.plan

    def spy(r):
        plans[r] = original_plan(r)
        return plans[r]

    scheme.plan = spy
    decoded = _drive(scheme, stragglers)
    assert plans[2][0][0].job == 0 and plans[3][0][0].job == 1  # worker 0 redoes jobs 0 and 1
    assert {k.worker for k, _ in decoded[0][1]} <= {0, 2, 3} and decoded[0][0] == 2
    assert {k.worker for k, _ in decoded[1][1]} <= {0, 2, 3} and decoded[1][0] == 3
    for job in (2, 3):
        assert {k.worker for k, _ in decoded[job][1]} <= {1, 2, 3}


def test_msgc_worked_example_n4():
    scheme = make_scheme("msgc", n=4, jobs=1, B=2, W=3, lam=2)
    decoded = _drive(scheme, {0: (0,), 1: (0,), 2: (1,), 3: (1,)})
    round_decoded, decoding = decoded[0]
    assert round_decoded == 3
    late_slots = {(k.worker, k.slot) for k, _ in decoding if k.slot >= 2}
    # worker 0 redoes its two D1 chunks in slots 2, 3; each D2 group decodes from {2, 3}
    assert late_slots == {(0, 2), (0, 3), (2, 2), (2, 3), (3, 2), (3, 3)}


@pytest.mark.parametrize("name,params,message", [
    ("msgc", dict(B=1, W=2, lam=5), "lam must satisfy lam <= n"),
    ("msgc", dict(B=2, W=2, lam=1), "B must satisfy 1 <= B < W"),
    ("srsgc", dict(B=0, W=2, lam=1), "B must be >= 1"),
    ("gc", dict(s=4), "s must satisfy 0 <= s < n"),
    ("gc", dict(s=-1), "s must satisfy"),
    ("ignore", dict(s=9), "s must satisfy"),
    ("gc", dict(), "needs parameter 's'"),
    ("msgc", dict(B=1, W=2), "needs parameter 'lam'"),
    ("gc", dict(s=1, lam=2), "unknown parameter 'lam'"),
    ("gc", dict(s=1, gc_code="rs"), "gc_code must be one of"),
    ("nope", dict(), "unknown scheme 'nope'"),
])
def test_make_scheme_rejects_bad_parameters(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_scheme(name, n=4, **params)


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_make_scheme_rejects_bad_n(n):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        make_scheme("uncoded", n=n)


def test_protocol_misuse_is_reported():
    scheme = make_scheme("gc", n=4, jobs=2, s=1)
    with pytest.raises(ValueError, match="next round is 0"):
        scheme.plan(1)
    scheme.plan(0)
    with pytest.raises(ValueError, match="shape"):
        scheme.record(0, np.ones(3, dtype=bool))
    with pytest.raises(DecodeError):
        scheme.decode(0)


def test_models_online_checks():
    bursty = Bursty(2, 3, 2)
    h = [np.array([1, 0, 0, 0], bool)]
    assert bursty.conforms(h, np.array([1, 1, 0, 0], bool))
    assert not bursty.conforms(h, np.array([1, 1, 1, 0], bool))  # 3 distinct in window
    h2 = [np.array([1, 0, 0, 0], bool), np.array([0, 0, 0, 0], bool)]
    assert not bursty.conforms(h2, np.array([1, 0, 0, 0], bool))  # not one run of <= B
    assert SPerRound(1).conforms([], np.array([0, 1, 0], bool))
    assert not SPerRound(1).conforms([], np.array([1, 1, 0], bool))


def test_accept_late_uses_results_only_for_undecoded_jobs():
    scheme = make_scheme("gc", n=4, jobs=1, s=1, gc_code="fr")
    scheme.plan(0)
    scheme.record(0, np.array([True, False, False, True]))  # group {2,3} ok, group {0,1} ok
    assert scheme.decodable(0)
    scheme = make_scheme("uncoded", n=3, jobs=1)
    scheme.plan(0)
    scheme.record(0, np.array([True, True, False]))
    assert not scheme.decodable(0)
    scheme.accept_late(0, 2)
    assert scheme.decodable(0)


@pytest.mark.parametrize("num_samples", [0, 1, 7, 100, 7424, 4096])
def test_allocate_samples_uses_every_sample_once(num_samples):
    fractions = make_scheme("msgc", n=8, B=1, W=2, lam=3).chunk_fractions
    counts = allocate_samples(fractions, num_samples)
    assert counts.sum() == num_samples and (counts >= 0).all()
    assert np.abs(counts - fractions * num_samples).max() < 1.0
    bounds = chunk_boundaries(fractions, num_samples)
    assert bounds[0].start == 0 and bounds[-1].stop == num_samples


def test_allocate_samples_is_exact_at_the_granularity():
    scheme = make_scheme("msgc", n=4, B=2, W=3, lam=2)
    counts = allocate_samples(scheme.chunk_fractions, 32, scheme.chunk_groups)
    assert np.array_equal(counts, scheme.chunk_fractions * 32)


SLOTTED = [("msgc", 256, dict(B=1, W=2, lam=27)), ("msgc", 256, dict(B=2, W=3, lam=23)),
           ("msgc", 10, dict(B=2, W=4, lam=3)), ("srsgc", 256, dict(B=2, W=3, lam=23)),
           ("gc", 256, dict(s=15)), ("gc", 10, dict(s=3, gc_code="fr")), ("uncoded", 7, {})]


@pytest.mark.parametrize("name,n,params", SLOTTED)
@pytest.mark.parametrize("num_samples", [4096, 2048, 1000, 97])
def test_group_balancing_keeps_slot_costs_and_load_honest(name, n, params, num_samples):
    """Each group gets its sample total first, then spreads it evenly: the slots of one group
    differ by at most one sample (a group code's by at most ρ_max+1: a worker holds all of its
    group's parts but ρ spread ones), and each worker's load is within that per slot of the
    model (at n=256, batch 4096, rounding chunk by chunk was 39% off for M-SGC (1,2,27))."""
    from gcode.codes import worker_samples
    scheme = make_scheme(name, n=n, **params)
    counts = allocate_samples(scheme.chunk_fractions, num_samples, scheme.chunk_groups)
    assert counts.sum() == num_samples
    bounds = np.cumsum((0,) + scheme.chunk_groups)
    slots = {}
    for i in range(n):  # every task a worker can run: one slot's cost, by the group it reads
        tasks = [[w] for w in range(n)] if name == "uncoded" else None
        if name == "msgc":
            per = scheme.W - 1
            tasks = [[i * per + c] for c in range(per)]
            if scheme.code is not None:
                tasks += [[bounds[1 + b] + int(j) for j in scheme.code.support(i)] for b in range(scheme.B)]
        elif name != "uncoded":
            tasks = [scheme.code.support(i).tolist()]
        for chunks in tasks:
            group = int(np.searchsorted(bounds, chunks[0], side="right")) - 1
            slots.setdefault(group, []).append(int(counts[chunks].sum()))
    spread = 1 + getattr(getattr(scheme, "code", None), "rho_max", 0)
    for costs in slots.values():
        assert max(costs) - min(costs) <= spread
    samples = worker_samples(scheme, num_samples)
    slots_per_worker = scheme.slots if name == "msgc" else 1
    assert np.abs(samples - scheme.load * num_samples).max() < spread * slots_per_worker + 1e-9


BLOCKED = [("uncoded", 4, {}), ("uncoded", 3, {}), ("gc", 4, dict(s=1, gc_code="fr")),
           ("gc", 8, dict(s=2, gc_code="group")), ("gc", 5, dict(s=1, gc_code="cyclic")),
           ("srsgc", 6, dict(B=1, W=2, lam=2)), ("msgc", 4, dict(B=1, W=2, lam=1, gc_code="fr")),
           ("msgc", 8, dict(B=2, W=3, lam=3))]


@pytest.mark.parametrize("name,n,params", BLOCKED)
@pytest.mark.parametrize("num_samples,block", [(64, 8), (64, 1), (240, 10), (96, 32), (12, 12)])
def test_chunks_are_unions_of_whole_blocks(name, n, params, num_samples, block):
    """exact_blocks: every scheme's chunks are consecutive runs of whole blocks, covering the
    batch once; the allocation is the plain one over the blocks, times the block size."""
    scheme = make_scheme(name, n=n, **params)
    counts = allocate_samples(scheme.chunk_fractions, num_samples, scheme.chunk_groups, block)
    assert counts.sum() == num_samples and (counts % block == 0).all()
    assert np.array_equal(counts, block * allocate_samples(scheme.chunk_fractions,
                                                           num_samples // block, scheme.chunk_groups))
    bounds = chunk_boundaries(scheme.chunk_fractions, num_samples, scheme.chunk_groups, block)
    assert all(b.start % block == 0 and b.stop % block == 0 for b in bounds)
    assert bounds[0].start == 0 and bounds[-1].stop == num_samples
    from gcode.codes import worker_samples
    assert (worker_samples(scheme, num_samples, block) % block == 0).all()


def test_blocks_must_divide_the_samples():
    with pytest.raises(ValueError, match="num_samples=64 must be a multiple of block=5"):
        allocate_samples(np.full(4, 0.25), 64, block=5)


def test_allocate_samples_names_a_bad_group():
    with pytest.raises(ValueError, match="groups must be positive sizes summing to 3"):
        allocate_samples(np.full(3, 1 / 3), 9, groups=(1, 1))
    with pytest.raises(ValueError, match="differ in size"):
        allocate_samples(np.array([0.5, 0.25, 0.25]), 8, groups=(3,))
