"""The collective plane's benchmarks: benchmarks/network_calibration.py's report is what its
recorded samples give (docs/RESULTS.md and docs/SCALING.md quote it), and
benchmarks/device_collective.py's checks pass on CPU tensors (the GPU run is the device's)."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calibration_report_is_what_its_samples_give(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports network_terms by name
    calibration = load("network_calibration")
    result = json.loads((BENCHMARKS / "results" / "network_calibration.json").read_text())
    again = calibration.report(result)
    stored = result["report"]
    assert again["order"] == stored["order"] and again["within_target"] == stored["within_target"]
    for new, old in zip(again["rows"], stored["rows"], strict=True):
        assert new["predicted_s"] == pytest.approx(old["predicted_s"], rel=1e-9)
        assert new["measured_s"] == pytest.approx(old["measured_s"], rel=1e-12)
    # a collective round's communication leaves out its folds' critical path
    row = {"seconds": 0.3, "seconds_all": [0.3, 0.5, 0.2], "phases": [{"fold_span_s": 0.1}] * 3}
    assert calibration.measured_communication(row) == pytest.approx(0.2)
    assert calibration.measured_communication({"seconds": 0.3}) == 0.3


def test_live_report_is_what_its_runs_give(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports network_terms by name
    live_model = load("network_live_model")
    result = json.loads((BENCHMARKS / "results" / "network_calibration.json").read_text())
    runs = json.loads((BENCHMARKS / "results" / "netns_live.json").read_text())
    again = live_model.live_rows(runs, result["report"]["fits"])
    stored = result["report"]["live"]
    assert again["within_target"] == stored["within_target"]
    for new, old in zip(again["rows"], stored["rows"], strict=True):
        for what in ("other_n", "other_rate", "links_only"):
            assert new[f"{what}_round_s"] == pytest.approx(old[f"{what}_round_s"], rel=1e-9)
    # every run at both n and both rates, both planes
    assert {(r["rate"], r["n"], r["plane"]) for r in again["rows"]} == {
        (rate, n, plane) for rate in ("1gbit", "10gbit") for n in (4, 8) for plane in ("star", "collective")}
    repeats = json.loads((BENCHMARKS / "results" / "netns_live_repeat.json").read_text())
    for new, old in zip(live_model.repeat_rows(repeats, again, result["report"]["fits"]), stored["repeats"],
                        strict=True):
        assert new["predicted_round_s"] == pytest.approx(old["predicted_round_s"], rel=1e-9)


def test_live_work_terms_are_per_parameter_per_core_equivalent(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    live_model = load("network_live_model")
    d, n = 1_000_000, 8
    entry = {"cpus": 2, "workers": n, "runs": {
        "collective": {"num_params": d, "runtime_s": 12 * 0.5, "rounds": 12, "compute_s_per_round": 0.1,
                       "plane_s_per_decode": {"fold": 0.004, "allreduce": 0.2, "step": 0.08, "check": 0.002}},
        "star": {"timings_s_per_round": {"fold": 0.016, "step": 0.03}}}}
    terms = live_model.work_samples(entry, {"control_alpha": 0.001})
    assert live_model.share(entry) == 0.25
    assert terms["step_s_per_param"] == pytest.approx(0.08 * 0.25 / d)
    assert terms["check_s_per_param"] == pytest.approx(0.002 * 10 * 0.25 / d)  # a tenth of decodes check
    assert terms["call_s"] == pytest.approx((0.5 - 0.1 - 0.286 - 0.002) / n)
    assert terms["coord_fold_s_per_param"] == pytest.approx(0.016 / (n * d))


def test_work_calibration_measures_every_term():
    work_calibration = load("work_calibration")
    work = work_calibration.measure(repeats=1, sizes=(10_000,), shape=(16, 32, 4), flush_mb=1)
    for optimizer in ("adam", "sgd"):
        terms = work_calibration.terms(work, optimizer)
        assert set(terms) == {"fold_fp32_s_per_param", "fold_fp64_s_per_param", "step_s_per_param",
                              "check_s_per_param"}
        assert all(v > 0 for v in terms.values())


@pytest.mark.slow
def test_device_collective_checks_pass_on_cpu_tensors(tmp_path, monkeypatch):
    import importlib
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # its ranks are spawned: they import it by name
    out = tmp_path / "device_collective.json"
    device_collective = importlib.import_module("device_collective")
    assert device_collective.main(["--device", "cpu", "--world", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["all_exact"] and len(result["rows"]) == 5
    for row in result["rows"]:
        assert row["decoded_jobs"] == row["jobs"] and row["max_rel_error"] <= 1e-6, row
        assert row["replicas_identical"], row
