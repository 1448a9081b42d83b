"""The benchmark commands run, emit the promised JSON shape, and write real PNG files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from paths import TRACES

SCHEMES = {"uncoded", "ignore", "gc", "srsgc", "msgc", "auto"}


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, path
    import matplotlib.image as mpimg
    assert mpimg.imread(path).std() > 0.01, f"{path} is blank"


@pytest.fixture(scope="module")
def trace_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "gcode", "bench", "trace", "--traces", str(TRACES),
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), out


def test_bench_trace_json_shape(trace_bench):
    result, out = trace_bench
    assert set(result["traces"]) == {"lambda-cnn-w256-r30-canada.csv", "lambda-cnn-w256-r20-canada.csv"}
    for trace in result["traces"].values():
        assert set(trace["schemes"]) == SCHEMES
        for row in trace["schemes"].values():
            for column in ("hindsight", "out_of_sample"):
                assert row[column]["runtime_s"] > 0 and isinstance(row[column]["params"], dict)
                assert row[column]["speedup_vs_uncoded"] > 0 and row[column]["speedup_vs_gc"] > 0
    assert 0.5 < result["load_slope_fit"]["slope_s_per_load"] < 2.0
    assert json.loads((out / "bench_trace.json").read_text())["traces"]
    assert "out-of-sample" in (out / "bench_trace.md").read_text()
    assert_png(out / "bench_trace.png")


def test_hindsight_is_never_worse_than_out_of_sample_for_tuned_schemes(trace_bench):
    result, _ = trace_bench
    for trace in result["traces"].values():
        for name in ("gc", "srsgc", "msgc"):
            row = trace["schemes"][name]
            assert row["hindsight"]["runtime_s"] <= row["out_of_sample"]["runtime_s"] + 1e-9


def test_bench_sim_quick(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gcode", "bench", "sim", "--quick", "--repeats", "2",
                           "--out", str(tmp_path), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["results_agree"] and result["grid_settings"] == 14080
    assert_png(tmp_path / "bench_sim.png")


@pytest.mark.ray
@pytest.mark.slow
def test_bench_live_quick_reports_ratios_and_live_over_sim(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gcode", "bench", "live", "--quick", "--jobs", "6",
                           "--out", str(tmp_path), "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert set(result["injections"]) == {"bursty", "gilbert_elliott", "trace"}
    cal = result["calibration"]  # one slope and intercept, from separate runs, for every scheme
    assert [p["load"] for p in cal["points"]] == [0.125, 0.25, 0.5, 1.0]
    assert cal["slope_s_per_load"] >= 0 and cal["intercept_s"] >= 0
    assert all(p["response_s_mean"] > 0 for p in cal["points"])
    for inj, rows in result["injections"].items():
        assert set(rows) == SCHEMES
        for row in rows.values():
            assert row["runtime_s"] > 0 and row["speedup_vs_uncoded"] > 0 and row["speedup_vs_gc"] > 0
            if inj == "trace":
                assert row["simulated_s"] > 0 and row["live_over_sim"] > 0
    assert_png(tmp_path / "bench_live.png")


@pytest.mark.ray
@pytest.mark.slow
def test_bench_versus_runs_ddp_and_gcode_side_by_side(tmp_path):
    """Real torch DDP (gloo) and real gcode runs on one shared delay table; every row and every
    contract key is in the JSON, and vs_ddp is DDP's wall time over the row's."""
    proc = subprocess.run([sys.executable, "-m", "gcode", "bench", "versus", "--model", "mlp",
                           "--workers", "2", "--jobs", "4", "--batch-size", "64",
                           "--schemes", "uncoded,gc-s1,uncoded-pipelined,uncoded-arrival",
                           "--inject-param", "base=0.02", "--out", str(tmp_path), "--json",
                           "--log-dir", str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["config"]["model"] == "mlp" and result["config"]["workers"] == 2
    assert result["config"]["gcode_warmup_jobs"] > 0  # gcode is timed warm, as DDP is
    rows = result["rows"]
    # one DDP row per number of models: the pipelined rows train M = 2 models round-robin
    assert [r["system"] for r in rows] == ["ddp", "ddp", "gcode", "gcode", "gcode", "gcode"]
    assert [r["row"] for r in rows] == ["ddp", "ddp-m2", "uncoded", "gc-s1", "uncoded-pipelined",
                                        "uncoded-arrival"]
    ddp = {r["models"]: r for r in rows[:2]}
    for r in rows:
        for key in ("system", "scheme", "params", "wall_s", "steps", "vs_ddp", "models",
                    "steps_per_model", "ddp_row", "overhead_s_per_round", "compute_s_per_round"):
            assert key in r, key
        assert r["steps"] == 4 and r["wall_s"] > 0 and r["steps_per_model"] == 4 // r["models"]
        assert r["ended_unix"] - r["started_unix"] >= r["wall_s"]  # the row's setup, then its timed part
        # each row against DDP training the same number of models for the same steps per model
        assert r["ddp_row"] == ddp[r["models"]]["row"]
        assert r["vs_ddp"] == pytest.approx(ddp[r["models"]]["wall_s"] / r["wall_s"])
    assert rows[0]["params"]["backend"] == "gloo" and rows[0]["vs_ddp"] == 1.0
    assert all(r["overhead_s_per_round"] > 0 and r["compute_s_per_round"] > 0 for r in rows[2:])
    assert result["config"]["transport"] == "auto"  # one node: every row runs on shm
    assert all(r["transport"] == "shm" for r in rows[2:])
    # the pipelined row trains M = T+2 = 2 models; every round after the first starts early
    piped = rows[4]
    assert piped["params"]["models"] == 2 and piped["models"] == 2 and piped["steps_per_model"] == 2
    assert piped["pipelined_rounds"] == piped["rounds"] - 1 and rows[2]["pipelined_rounds"] == 0
    assert piped["exposed_overhead_s_per_round"] <= piped["overhead_s_per_round"]
    # dispatch at arrival: uncoded waits for everyone, so rounds 1..3 go out at arrivals
    arrival = rows[5]
    assert arrival["params"]["dispatch"] == "arrival" and "dispatch" not in piped["params"]
    assert arrival["dispatched_at_arrival"] == 2 * 3 and piped["dispatched_at_arrival"] == 0
    assert arrival["param_checksum"] == pytest.approx(piped["param_checksum"], rel=1e-6)
    # the same batches from the same seeds: uncoded gcode and DDP end with nearly equal weights,
    # one model or two
    assert rows[2]["param_checksum"][0] == pytest.approx(rows[0]["param_checksum"][0], rel=1e-4)
    assert piped["param_checksum"] == pytest.approx(rows[1]["param_checksum"], rel=1e-4)
    assert result["best_exact"]["models"] == 1 and set(result["best_exact_by_models"]) == {"1", "2"}
    table = (tmp_path / "bench_versus_mlp.md").read_text()
    assert_png(tmp_path / "bench_versus_mlp.png")
    assert "vs DDP" in table and "One model, 4 steps" in table and "2 models trained" in table
    for r in rows[2:]:  # --log-dir: every gcode row's rounds, with their arrivals
        records = [json.loads(line) for line in (tmp_path / "logs" / f"{r['row']}-0.jsonl").open()]
        assert len(records) == r["rounds"] and all(rec["arrival_s"] for rec in records)
        # declared ∩ injected, counted from both sides
        assert r["stragglers_injected"] >= 0 and r["on_time_declared"] >= 0
        assert (r["stragglers_declared"] - r["on_time_declared"]
                == r["stragglers_injected"] - r["injected_waited_for"])
    assert "Stragglers per row" in (tmp_path / "bench_versus_mlp.md").read_text()


def test_straggler_accounting_sets_declared_against_injected(tmp_path):
    """Round 0 injects worker 1 and the policy cuts worker 2 (on time); round 1 injects worker 0
    and the round waits for it; the row ran 2 of the table's 3 rounds."""
    from gcode.bench.versus import _straggler_accounting
    table = np.array([[1.0, 3.0, 1.0], [3.0, 1.0, 1.0], [1.0, 1.0, 3.0]])
    log = tmp_path / "row.jsonl"
    log.write_text('{"round": 0, "stragglers": [2]}\n{"round": 1, "stragglers": []}\n')
    got = _straggler_accounting({"rounds": 2}, log, table, {"model": "bursty"})
    assert (got["stragglers_injected"], got["on_time_declared"], got["injected_waited_for"]) \
        == (2, 1, 2)
    none = _straggler_accounting({"rounds": 2}, log, table, {"model": "pareto"})
    assert none["on_time_declared"] is None and none["stragglers_injected"] is None


def test_versus_time_scale_auto_makes_a_straggler_three_steps_late():
    """`--time-scale auto` scales a trace so that a round's slowest worker is, on average, three
    of one worker's steps behind the round's median worker."""
    import numpy as np

    from gcode.bench.versus import VersusConfig, delay_table, straggler_excess
    trace = str(TRACES / "lambda-cnn-w256-r30-canada.csv")
    cfg = VersusConfig(workers=8, inject_trace=trace, time_scale=None)
    table, inject = delay_table(cfg, rounds=20, compute_s=0.02)
    assert straggler_excess(table) == pytest.approx(0.06)
    raw, _ = delay_table(VersusConfig(workers=8, inject_trace=trace, time_scale=1.0), 20, 0.02)
    np.testing.assert_allclose(table, raw * inject["time_scale"])
    assert inject["trace"] == trace and inject["time_scale_rule"].startswith("auto")
    with pytest.raises(ValueError, match="--time-scale auto needs --inject-trace"):
        VersusConfig(time_scale=None)
    with pytest.raises(ValueError, match="no stragglers"):
        straggler_excess(np.ones((3, 4)))


def test_versus_gap_sets_every_gap_row_and_nothing_else():
    from gcode.bench.versus import VersusConfig, row_sections
    assert row_sections("msgc-gap-pipelined", 0.2)[1] == {"name": "gap", "gap": 0.2}
    assert row_sections("msgc-lam3-gap", 0.2)[1] == {"name": "gap", "gap": 0.2}
    assert row_sections("msgc-earliest", 0.2)[1] == {"name": "earliest"}
    assert row_sections("msgc-gap")[1]["gap"] == 0.05
    assert row_sections("msgc-gap-arrival", 0.2)[1:] == (
        {"name": "gap", "gap": 0.2}, {"models": 3, "dispatch": "arrival"})
    with pytest.raises(ValueError, match="unknown 'srsgc-arrival'"):  # no per-worker plans
        row_sections("srsgc-arrival")
    with pytest.raises(ValueError, match="--gap must be > 0"):
        VersusConfig(gap=0.0)


def test_the_simulator_replays_a_live_resnet_run_within_one_percent():
    """benchmarks/sim_replay_live.py on a committed 16-core run: measured compute plus the
    rebuilt delay table, through the same scheme and policy, lands within 1% of the wall time
    measured (200.8 s); dispatch at arrival is predicted faster."""
    module = _load_benchmark("sim_replay_live")
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    row = module.replay(results / "versus_resnet18-cpu-gap15.json",
                        results / "versus_resnet18-cpu-gap15.rounds.jsonl")
    assert row["sim_round_s"] == pytest.approx(row["measured_s"], rel=0.01)
    assert row["sim_arrival_s"] < row["sim_round_s"]


@pytest.mark.parametrize("run", ["arrival", "cyclic", "cyclic-b", "arrival-gap10",
                                 "arrival-gap10b"])
def test_the_simulator_replays_live_resnet_runs_at_arrival_within_one_percent(run):
    """The same replay of the five committed 16-core runs with dispatch at arrival (155.7,
    160.4, 182.8, 206.7 and 212.5 s measured): the simulator's head starts follow the live
    rule (tasks go out one round ahead at most), so each lands within 1%."""
    module = _load_benchmark("sim_replay_live")
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    row = module.replay(results / f"versus_resnet18-cpu-{run}.json",
                        results / f"versus_resnet18-cpu-{run}.rounds.jsonl")
    assert row["sim_arrival_s"] == pytest.approx(row["measured_s"], rel=0.01)


def test_replaying_a_live_run_under_other_policies():
    """``sim_replay_live.py --policy``: the run's own policy (gap 0.15) replays to the default
    replay's figure, and the other policies replay the same workers' times."""
    module = _load_benchmark("sim_replay_live")
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    pair = (results / "versus_resnet18-cpu-arrival.json",
            results / "versus_resnet18-cpu-arrival.rounds.jsonl")
    row = module.replay_policies(*pair, ["gap:0.15", "earliest", "partial:0.2"], "arrival")
    assert row["sim_s"]["gap:0.15"] == pytest.approx(module.replay(*pair)["sim_arrival_s"])
    assert all(120 < s < 200 for s in row["sim_s"].values())
    with pytest.raises(SystemExit, match="earliest takes no value"):
        module.parse_policy("earliest:1")


def test_fetch_cost_measures_every_mode():
    """benchmarks/fetch_cost.py runs on the CPU too (CI has no GPU): one figure per mode."""
    r = _load_benchmark("fetch_cost").measure(k=3, d=1000, repeats=2)
    assert {"staged", "copy", "check", "async", "async_queue"} <= set(r)
    assert all(r[m] >= 0 for m in ("staged", "copy", "check", "async", "async_queue"))


def _load_benchmark(name: str):
    import importlib.util
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(name, root / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_utilisation_is_averaged_over_each_rows_timed_window(tmp_path):
    """Samples every second, GPU 0 busy (90%) from 12:00:10 to 12:00:20, GPU 1 idle: a row
    timed over exactly those 10 s sees 90% and 0%, the row before it only idle samples."""
    gpu = _load_benchmark("gpu_util_by_row")
    lines = [f"2026/11/30 12:00:{s:02d}.000, {g}, {90 if g == 0 and 10 <= s <= 20 else 0} %"
             for s in range(30) for g in (0, 1)]
    csv_path = tmp_path / "gpu_util.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    t0 = 1796040000.0  # 2026-11-30 12:00:00 UTC
    result = {"rows": [{"system": "ddp", "scheme": "ddp", "wall_s": 5.0, "ended_unix": t0 + 8},
                       {"system": "gcode", "scheme": "msgc", "row": "msgc-gap", "wall_s": 10.0,
                        "ended_unix": t0 + 20}]}
    rows = gpu.utilisation_by_row(result, gpu.read_samples(csv_path))
    assert rows[0]["mean_util"] == {0: 0.0, 1: 0.0} and rows[0]["samples"] == 12
    assert rows[1]["row"] == "msgc-gap" and rows[1]["mean_util"] == {0: 90.0, 1: 0.0}
    csv_path.write_text("not a sample\n")
    with pytest.raises(SystemExit, match="gpu_util.csv:1"):
        gpu.read_samples(csv_path)


def test_worker_profile_times_every_phase_on_the_cpu():
    """benchmarks/profile_worker.py (docs/RESULTS.md's worker phase table) runs on the CPU and times
    every phase; reading ahead keeps the task's arithmetic, so the phases stay positive."""
    import importlib.util
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "profile_worker.py"
    spec = importlib.util.spec_from_file_location("profile_worker", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.profile("mlp", samples=8, device="cpu", repeats=2)
    assert set(result["median_ms"]) == {"load", "data", "backward", "gather", "to_host", "task",
                                        "worker", "worker_ahead", "plain"}
    assert all(v > 0 for v in result["median_ms"].values()), result
    assert result["device"] == "cpu" and result["num_params"] > 0


def test_the_auto_live_summary_sets_auto_against_the_best_fixed_one_model_row():
    """benchmarks/device_auto_live.py's summary, on the committed 2-core run: auto's wall time
    over the best fixed row's, and its coordinator overhead against the fixed rows'."""
    module = _load_benchmark("device_auto_live")
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    doc = json.loads((results / "auto_live_2core.json").read_text())
    for run in doc["runs"].values():
        s = module.summarize({"rows": run["rows"]})
        fixed = {k: v for k, v in s["wall_s"].items() if k in module.FIXED}
        assert s["best_fixed"] == min(fixed, key=fixed.get)
        assert s["auto_vs_best"] == pytest.approx(s["wall_s"]["auto"] / min(fixed.values()))
        assert set(s["models"].values()) == {1}  # every row trains one model
        assert s["auto_overhead_excess_ms"] == pytest.approx(
            s["auto_overhead_ms"] - s["fixed_overhead_ms_mean"])
