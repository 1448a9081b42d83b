"""The group code (gcode.codes.group): exact decoding from every straggler set at small n, a
certificate equal to brute-force enumeration, its load and message dtype, and the paper's
configurations within 3% of (s+1)/n."""

import itertools

import numpy as np
import pytest

from gcode.codes import DecodeError, FractionalRepetitionCode, GroupCode, make_gc_code, make_scheme
from gcode.codes.exactness import DECODE_ERROR_BUDGET, cheapest_dtype, exact_in, residual_and_amplification
from gcode.codes.group import (
    certify_shape,
    divided_difference_weights,
    group_code_load,
    group_matrix,
    group_points,
)
from gcode.codes.loads import gc_load, msgc_load, srsgc_load


@pytest.mark.parametrize("n", [*range(2, 12), pytest.param(12, marks=pytest.mark.slow)])
def test_every_straggler_set_decodes_within_the_certificate(n):
    """Every set of at most s stragglers, every s, every cap: decodable, a decode vector over
    finished workers only, Σ a_i·B_i = 1 and an error factor within the certified bound."""
    for s in range(n):
        for rho_max in (None, 0, 1, 3):
            code = GroupCode(n, s, rho_max=rho_max)
            assert code.certified and code.error_bound <= DECODE_ERROR_BUDGET
            assert code.part_fractions.sum() == pytest.approx(1.0)
            held = (code.encoding != 0) @ code.part_fractions
            assert held.max() == pytest.approx(code.load)
            for k in range(s + 1):
                for stragglers in itertools.combinations(range(n), k):
                    arrived = np.ones(n, dtype=bool)
                    arrived[list(stragglers)] = False
                    assert code.decodable(arrived)
                    workers, a = code.decode_vector(arrived)
                    assert arrived[workers].all() and np.all(np.diff(workers) > 0)
                    residual, amplification = residual_and_amplification(code.encoding[workers], a)
                    assert residual <= code.residual + 1e-15
                    assert amplification <= code.amplification * (1 + 1e-12)
                    assert code.error_factor(residual, amplification) <= code.error_bound + 1e-15


@pytest.mark.parametrize("m,rho", [(5, 1), (9, 2), (12, 3), (17, 2)])
def test_the_certificate_is_the_brute_force_worst_case(m, rho):
    t, enc = group_points(m), group_matrix(m, rho)
    worst_r = worst_a = 0.0
    for subset in itertools.combinations(range(m), rho + 1):
        a = divided_difference_weights(t[list(subset)])
        r, amplification = residual_and_amplification(enc[list(subset)], a)
        worst_r, worst_a = max(worst_r, r), max(worst_a, amplification)
    certified = certify_shape(m, rho)
    assert certified[0] == pytest.approx(worst_r, abs=1e-15) and certified[1] == pytest.approx(worst_a)
    subset = list(certified[2])
    assert residual_and_amplification(enc[subset], divided_difference_weights(t[subset]))[1] == \
        pytest.approx(worst_a)


def test_too_few_finished_nodes_in_a_group_is_not_decodable():
    code = GroupCode(13, 3)  # a group of 5 nodes (ρ = 1) and two FR groups of 4
    assert code.group_rho.tolist() == [1, 0, 0]
    arrived = np.ones(13, dtype=bool)
    arrived[:4] = False  # 4 of the first group's 5 nodes: one is left, ρ+1 = 2 needed
    assert not code.decodable(arrived)
    with pytest.raises(DecodeError, match="group 0"):
        code.decode_vector(arrived)


def test_replicas_send_their_nodes_message_and_decode_like_it():
    code = GroupCode(64, 40)  # one group; ρ capped at 3, so 20 workers are replicas
    assert code.num_groups == 1 and code.rho_max == 3 and code.num_nodes == 44
    for w in range(44, 64):
        twin = int(code.local_node[w])
        assert code.row(w)[0].tolist() == code.row(twin)[0].tolist()
        assert code.row(w)[1].tolist() == code.row(twin)[1].tolist()
    arrived = np.zeros(64, dtype=bool)
    arrived[[44, 45, 2, 3]] = True  # nodes 0 and 1 only through their replicas
    workers, a = code.decode_vector(arrived)
    assert sorted(workers.tolist()) == [2, 3, 44, 45]
    assert np.abs(a @ code.encoding[workers] - 1).max() < 1e-9


def test_fr_is_the_group_code_without_coding_and_exact_in_fp32():
    for n, s in [(256, 27), (10, 3), (9, 0), (7, 6)]:
        fr, group = FractionalRepetitionCode(n, s), GroupCode(n, s, rho_max=0)
        assert np.array_equal(fr.encoding, group.encoding) and fr.kind == "fr"
        assert fr.amplification == 1.0 and fr.residual == 0.0 and fr.message_dtype == np.float32
        assert fr.load == pytest.approx(1 / (n // (s + 1)))


@pytest.mark.parametrize("n,s", [(256, 15), (256, 27), (64, 8), (1024, 30), (256, 40), (512, 60),
                                 (64, 40), (100, 50), (7, 2), (300, 1), (8, 2), (14, 5)])
def test_load_closed_form_and_the_fp32_rule(n, s):
    """The load equals the closed form the tuner uses; the code is FR exactly when FR's load is
    within 3% of the least load the construction reaches; its dtype is the cheapest the
    certificate allows (fp32 for FR and for small ρ = 1 groups, whose coefficients are exact)."""
    code = make_gc_code("group", n, s)
    assert code.load == pytest.approx(group_code_load(n, s)) == pytest.approx(gc_load(n, s, "group"))
    fr_load = 1 / (n // (s + 1))
    assert code.load <= fr_load + 1e-12 and code.load >= (s + 1) / n - 1e-12
    assert (code.rho_max == 0) == (fr_load <= 1.03 * group_code_load(n, s) or code.load == fr_load)
    assert code.coefficients_exact == exact_in(code.encoding, np.float32)
    assert code.message_dtype == cheapest_dtype(code.residual, code.amplification, code.coefficients_exact)
    if code.rho_max == 0:
        assert code.message_dtype == np.float32 and code.error_bound == 2.0 ** -24


def test_small_clusters_get_exact_load_in_fp32():
    """Issue 30: small clusters sent fp64 messages by default. With 4 to 12 workers the group
    code reaches (s+1)/n with ρ = 1 groups of at most 6 nodes, certified in fp32."""
    for n, s in [(4, 2), (8, 2), (10, 3), (12, 4), (7, 2)]:
        code = make_gc_code("group", n, s)
        assert code.load == pytest.approx((s + 1) / n) and code.message_dtype == np.float32
    assert make_scheme("msgc", n=4, B=1, W=2, lam=2).message_dtype == np.float32  # gcode.fit's default


def test_the_papers_configurations_stay_within_three_percent_of_the_cyclic_load():
    """Issue 27: GC (256, 15) and M-SGC (1, 2, 27) keep a coded load within 3% of (s+1)/n's,
    with certified fp32 messages."""
    for name, params, cyclic_load in [
            ("gc", {"s": 15}, gc_load(256, 15, "cyclic")),
            ("gc", {"s": 27}, gc_load(256, 27, "cyclic")),
            ("msgc", {"B": 1, "W": 2, "lam": 27}, msgc_load(256, 1, 2, 27, "cyclic")),
            ("srsgc", {"B": 2, "W": 3, "lam": 23}, srsgc_load(256, 2, 3, 23, "cyclic"))]:
        scheme = make_scheme(name, n=256, **params)
        assert scheme.params["gc_code"] == "group" and scheme.certified
        assert scheme.load <= 1.03 * cyclic_load, (name, params, scheme.load, cyclic_load)
    assert make_scheme("gc", n=256, s=15).message_dtype == np.float32
    assert make_scheme("msgc", n=256, B=1, W=2, lam=27).message_dtype == np.float32
