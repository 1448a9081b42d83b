"""The network model of the two data planes (gcode.sim.network), its fit, and its CLI."""

import json

import numpy as np
import pytest

from gcode.bench.scale_network import CPU_WORK, DEFAULT_NETWORK, with_work
from gcode.cli import main
from gcode.sim.network import NetworkModel, fit_link, star_pays
from gcode.sim.plane_work import PlaneWork


def test_formulas_match_the_issue_example():
    # n = 256, 1e9 fp32 parameters, 50 GB/s links: star about 41 s, a ring about 0.16 s
    net = NetworkModel(alpha=0.0, beta=50e9, params=1e9, bytes=4)
    assert net.star_round(256) == pytest.approx(2 * 256 * 4e9 / 50e9)
    assert net.allreduce(256) == pytest.approx(2 * 255 / 256 * 4e9 / 50e9)
    assert net.star_round(256) == pytest.approx(40.96) and net.allreduce(256) == pytest.approx(0.159375)


def test_each_term_by_hand():
    net = NetworkModel(alpha=1e-4, beta=1e8, coord_alpha=2e-4, coord_beta=1e9, params=1e6, bytes=8,
                       control_bytes=100)
    D = 8e6
    assert net.star_round(4) == pytest.approx(2 * (2e-4 + max(4 * D / 1e9, D / 1e8)))   # worker link binds
    assert net.star_round(400) == pytest.approx(2 * (2e-4 + 400 * D / 1e9))           # coordinator binds
    assert net.control_round(10) == pytest.approx(2 * (2e-4 + max(10 * 100 / 1e9, 100 / 1e8)))
    assert net.allreduce(10) == pytest.approx(18 * 1e-4 + 18 / 10 * D / 1e8)
    assert net.allreduce(1) == 0.0
    costs = net.run_costs(10, task_rounds=7, decoded_jobs=5, compute_s=3.0)
    assert costs["star"]["comm_s"] == pytest.approx(7 * net.star_round(10))
    assert costs["collective"]["comm_s"] == pytest.approx(7 * net.control_round(10) + 5 * net.allreduce(10))
    assert costs["star"]["runtime_s"] == pytest.approx(3.0 + costs["star"]["comm_s"])
    assert costs["collective"]["coordinator_bytes_per_round"] == 2 * 10 * 100
    # a control message may cost less than a transfer through the coordinator's link
    fast = NetworkModel(**{**net.as_dict(), "control_alpha": 5e-5})
    assert fast.control_round(10) == pytest.approx(2 * (5e-5 + max(10 * 100 / 1e9, 100 / 1e8)))
    assert fast.star_round(10) == net.star_round(10) and net.a_ctl == net.a_c == 2e-4


def test_break_even_is_where_the_planes_cost_the_same():
    net = NetworkModel()
    for n in (2, 8, 100, 1000):
        d = net.break_even_params(n)
        at = net.with_params(d)
        assert at.star_round(n) == pytest.approx(float(at.collective_round(n)), rel=1e-9)
        assert net.with_params(d * 0.9).star_round(n) < net.with_params(d * 0.9).collective_round(n)
        assert net.with_params(d * 1.1).star_round(n) > net.with_params(d * 1.1).collective_round(n)
    assert star_pays(net.with_params(1e9), n_max=2000) == []
    # a star transfer's fixed cost above a small collective's: the star never pays
    assert NetworkModel(coord_alpha=5e-3, control_alpha=1e-3).break_even_params(4) == 0.0
    # latency-bound (d = 1e4: a ring's 2(n-1) steps cost more than the star's bytes): the star pays
    assert star_pays(net.with_params(1e4), n_max=10_000) == [(2, 10_000)]


def test_fit_recovers_alpha_and_beta():
    rng = np.random.default_rng(0)
    sizes = np.geomspace(1e3, 1e8, 12)
    true_alpha, true_beta = 3e-4, 1.1e9
    seconds = (true_alpha + sizes / true_beta) * rng.uniform(0.98, 1.02, sizes.size)
    fit = fit_link(np.stack([sizes, seconds], 1))
    assert fit["alpha"] == pytest.approx(true_alpha, rel=0.1)
    assert fit["beta"] == pytest.approx(true_beta, rel=0.05)
    assert fit["rel_rms"] < 0.03 and fit["samples"] == 12
    # a ring allreduce among n: 2(n-1) steps, 2(n-1)/n D bytes per link
    ns = np.array([2, 4, 8, 4, 8, 2])
    D = np.array([1e6, 1e6, 1e6, 4e7, 4e7, 4e7])
    steps, link_bytes = 2 * (ns - 1), 2 * (ns - 1) / ns * D
    fit = fit_link(np.stack([link_bytes, steps * true_alpha + link_bytes / true_beta], 1), steps=steps)
    assert fit["alpha"] == pytest.approx(true_alpha) and fit["beta"] == pytest.approx(true_beta)


@pytest.mark.parametrize("samples, match", [([(1e6, 0.1)], "at least two"), ([(1e6, 0.1), (2e6, -1)], "> 0"),
                                            ([(1e6, 0.1), (2e6, float("nan"))], "finite")])
def test_fit_refuses_bad_samples(samples, match):
    with pytest.raises(ValueError, match=match):
        fit_link(samples)


def test_parse_units_and_errors():
    net = NetworkModel.parse("alpha=50us,beta=10gbit,coord_alpha=1ms,coord_beta=100GB,params=1e9,bytes=8")
    assert (net.alpha, net.beta, net.a_c, net.b_c) == (50e-6, 1.25e9, 1e-3, 1e11)
    assert (net.params, net.bytes) == (1e9, 8)
    assert NetworkModel.parse("beta=2e9").a_c == NetworkModel().alpha
    assert NetworkModel.parse("coord_alpha=2ms,control_alpha=300us").a_ctl == pytest.approx(300e-6)
    for text, match in [("alpha=5x", "alpha must be a number"), ("gamma=1", "KEY among"), ("beta=0", "beta"),
                        ("bytes=2.5", "whole number"), ("alpha=1,alpha=2", "twice"), ("beta", "KEY=VALUE"),
                        ("alpha=-1", "number")]:
        with pytest.raises(ValueError, match=match):
            NetworkModel.parse(text)


def test_simulate_network_adds_each_planes_communication(capsys):
    args = ["simulate", "--scheme", "msgc", "--B", "1", "--W", "2", "--lam", "27", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--network", "alpha=50us,beta=10gbit,params=1e9"]) == 0
    out = json.loads(capsys.readouterr().out)
    net = NetworkModel(alpha=50e-6, beta=1.25e9, params=1e9)
    assert out["runtime_s"] == plain["runtime_s"]  # the compute is unchanged
    # every round of this run had tasks; M-SGC decodes one job per round after its delay
    star, coll = out["network"]["star"], out["network"]["collective"]
    assert star["runtime_s"] == pytest.approx(plain["runtime_s"] + plain["rounds"] * net.star_round(256))
    assert coll["runtime_s"] == pytest.approx(plain["runtime_s"] + plain["rounds"] * net.control_round(256)
                                              + plain["decoded_jobs"] * net.allreduce(256))
    assert main(["simulate", "--scheme", "gc", "--network", "beta=1gbit"]) == 0
    assert "network: star" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["simulate", "--network", "beta=fast"])
    assert "argument --network: beta must be a number" in capsys.readouterr().err


def test_bench_scale_network_writes_table_json_png(tmp_path, capsys):
    assert main(["bench", "scale", "--network", "--n", "8", "16", "--rounds", "10",
                 "--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(r["n"], r["params"]) for r in result["rows"]] == [(8, 11.2e6), (8, 1e9), (16, 11.2e6), (16, 1e9)]
    for r in result["rows"]:
        assert min(r["star"]["round_s"], r["collective"]["round_s"]) > r["compute_s_per_round"]
        assert r["links_only_star_over_collective"] > 1  # 10 Gbit/s worker links: the links alone never pay
        assert r["star"]["work_s_per_round"] > 0 and r["collective"]["work_s_per_round"] > 0
    assert result["star_pays_links_only"] == {"1.12e+07": [], "1e+09": []}
    # with the planes' work (a dedicated core's, and fp64 accumulators) the crossover moves
    worked = with_work(DEFAULT_NETWORK)
    assert worked.work == CPU_WORK and worked.acc_bytes == 8
    assert result["star_pays"] == {f"{d:g}": [list(r) for r in star_pays(worked.with_params(d))]
                                   for d in (11.2e6, 1e9)}
    assert "The star pays" in (tmp_path / "bench_scale_network.md").read_text()
    assert (tmp_path / "bench_scale_network.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["bench", "scale", "--network", "alpha=1s,beta=10gbit", "--n", "8",
                 "--rounds", "10", "--out", str(tmp_path), "--json"]) == 0
    slow = json.loads(capsys.readouterr().out)  # latency-bound links: here the star pays
    assert [r["links_only_star_over_collective"] < 1 for r in slow["rows"]] == [True, False]  # d = 11.2M, 1e9
    assert "with the links alone, for" in (tmp_path / "bench_scale_network.md").read_text()


# ---- the planes' own work (gcode.sim.plane_work) and the shared host -------------------------------
WORK = PlaneWork(fold_fp32_s_per_param=1e-9, fold_fp64_s_per_param=4e-9, step_s_per_param=3e-9,
                 check_s_per_param=6e-9, check_every=10, call_s=2e-3, optimizer="adam")


def test_work_terms_by_hand():
    net = NetworkModel(alpha=1e-4, beta=1e8, params=1e6, accumulate_bytes=8, work=WORK)
    # each collective worker per decode: one fp64 fold, its replica's step, a tenth of a check
    assert net.collective_work() == pytest.approx((4e-9 + 3e-9 + 6e-10) * 1e6)
    # the coordinator's n calls join the control round trip
    bare = NetworkModel(alpha=1e-4, beta=1e8, params=1e6, accumulate_bytes=8)
    assert net.control_round(8) == pytest.approx(bare.control_round(8) + 8 * 2e-3)
    parts = net.control_round(8) + net.allreduce(8) + net.collective_work()
    assert net.collective_round(8) == pytest.approx(parts)
    # the star's coordinator sums n fp32 messages (its message dtype) and steps once
    assert net.star_work(8) == pytest.approx((8 * 1e-9 + 3e-9) * 1e6)
    assert net.star_round(8) == pytest.approx(net.star_comm(8) + net.star_work(8))
    # fp64 accumulators: the allreduce moves 8 bytes a value where the messages have 4
    assert net.allreduce(8) == pytest.approx(14 * 1e-4 + 14 / 8 * 8e6 / 1e8)
    # a coordinator's own costs, and a worker's share of a core
    own = PlaneWork(fold_fp32_s_per_param=1e-9, step_s_per_param=3e-9, coord_fold_s_per_param=2e-9,
                    coord_step_s_per_param=5e-9, cpu_share=0.25)
    assert own.coordinator_s(4, 1e6, 4) == pytest.approx((4 * 2e-9 + 5e-9) * 1e6)
    assert own.worker_s(1e6, 4) == pytest.approx((1e-9 + 3e-9) * 1e6 / 0.25)
    costs = net.run_costs(8, task_rounds=7, decoded_jobs=5, compute_s=3.0)
    assert costs["collective"]["work_s"] == pytest.approx(5 * net.collective_work())
    assert costs["star"]["comm_s"] == pytest.approx(7 * net.star_comm(8))
    assert costs["star"]["runtime_s"] == pytest.approx(3.0 + 7 * net.star_round(8))
    # none given: links only, as before the work terms
    assert not PlaneWork().modelled and NetworkModel().collective_work() == 0.0


def test_shared_host_term_grows_with_all_ranks_bytes():
    net = NetworkModel(alpha=0.0, beta=1e15, params=1e6, host_beta=1e9)
    for n in (4, 8, 16):
        assert net.allreduce(n) == pytest.approx(2 * (n - 1) * 4e6 / 1e9, rel=1e-6)


def test_break_even_with_work_and_when_the_star_pays_at_every_d():
    net = NetworkModel(work=WORK)
    for n in (16, 64):
        d = net.break_even_params(n)
        at = net.with_params(d)
        assert at.star_round(n) == pytest.approx(float(at.collective_round(n)), rel=1e-9)
        assert net.with_params(d * 2).star_round(n) > net.with_params(d * 2).collective_round(n)
    # a collective whose slope is the steeper (a slow check), and whose fixed cost is higher: inf
    heavy = NetworkModel(work=PlaneWork(check_s_per_param=1e-6, check_every=1), control_alpha=1e-2)
    assert heavy.break_even_params(2) == float("inf")


def test_work_terms_parse_with_units_and_refuse_bad_values():
    net = NetworkModel.parse("beta=1gbit,step_s_per_param=3ns,fold_fp64_s_per_param=0.004us,check_every=5,"
                             "cpu_share=0.5,host_beta=1.5GB,accumulate_bytes=8,call_s=10ms")
    assert net.work.step_s_per_param == pytest.approx(3e-9)
    assert net.work.fold_fp64_s_per_param == pytest.approx(4e-9)
    assert net.work.check_every == 5 and net.work.cpu_share == 0.5 and net.work.call_s == pytest.approx(0.01)
    assert net.host_beta == pytest.approx(1.5e9) and net.acc_bytes == 8
    again = NetworkModel(**net.as_dict())  # as_dict's work round-trips
    assert again.work == net.work and again.collective_round(8) == net.collective_round(8)
    for spec, message in (("check_every=0", "check_every must be a whole number >= 1"),
                          ("check_every=2.5", "check_every must be a whole number"),
                          ("cpu_share=0", "cpu_share must be > 0"),
                          ("step_s_per_param=-1ns", "step_s_per_param must be a number"),
                          ("step_s_per_param=3parsecs", "step_s_per_param must be a number"),
                          ("host_beta=0", "host_beta must be > 0")):
        with pytest.raises(ValueError, match=message):
            NetworkModel.parse(spec)


def test_fit_recovers_a_shared_host_term():
    rng = np.random.default_rng(1)
    rows = [(n, size) for n in (4, 8, 16) for size in (2.5e5, 1e6, 4e6, 1.3e7)]
    steps = np.array([2 * (n - 1) for n, _ in rows], dtype=float)
    link = np.array([2 * (n - 1) / n * size for n, size in rows])
    host = np.array([2 * (n - 1) * size for n, size in rows])
    seconds = (steps * 1e-3 + link / 1.2e9 + host / 1.8e9) * rng.uniform(0.99, 1.01, len(rows))
    fit = fit_link(np.stack([link, seconds], 1), steps=steps, host_bytes=host)
    assert fit["alpha"] == pytest.approx(1e-3, rel=0.1) and fit["host_beta"] == pytest.approx(1.8e9, rel=0.1)
    assert fit["beta"] == pytest.approx(1.2e9, rel=0.3)
    with pytest.raises(ValueError, match="host_bytes"):
        fit_link(np.stack([link, seconds], 1), steps=steps, host_bytes=host[:3])


def test_workers_sharing_a_node():
    one = NetworkModel(alpha=0.0, beta=1e8, coord_alpha=0.0, coord_beta=1e9, params=1e6)
    two = NetworkModel(alpha=0.0, beta=1e8, coord_alpha=0.0, coord_beta=1e9, params=1e6, workers_per_node=2)
    D = 4e6
    # the parameters go out once per node (4 copies for 8 workers); 8 gradients back, two per link
    assert two.star_comm(8) == pytest.approx(max(4 * D / 1e9, D / 1e8) + max(8 * D / 1e9, 2 * D / 1e8))
    assert one.star_comm(8) == pytest.approx(2 * max(8 * D / 1e9, D / 1e8))
    # a ring whose ranks are not ordered by node: two of its edges on each node's link
    assert two.allreduce(8) == pytest.approx(2 * one.allreduce(8))
    assert NetworkModel.parse("workers_per_node=2").workers_per_node == 2
