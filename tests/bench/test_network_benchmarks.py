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


def test_calibration_report_is_what_its_samples_give():
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
