"""benchmarks/device_exact.py's CPU path (the GPU run is the lead's, on the device): a tiny
ResNet through gcode's TaskComputer, cyclic and FR codes, deterministic algorithms on and off;
every straggler set decodes within 1e-6 of the exact sum and replicas are bit-identical."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "device_exact.py"


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_device_exact_on_each_device(tmp_path, device):
    spec = importlib.util.spec_from_file_location("device_exact", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--device", device, "--width", "2", "--image", "8", "--batch", "16",
                        "--jobs", "1", "--configs", "4:1", "--codes", "cyclic,fr",
                        "--out", str(tmp_path)])
    assert not torch.are_deterministic_algorithms_enabled()  # the defaults are back
    saved = json.loads((tmp_path / "device_exact.json").read_text())
    assert saved["rows"] == rows and len(rows) == 4
    for row in rows:
        assert row["verdict"] == "exact" and row["max_rel_error"] <= 1e-6, row
        assert row["identical_replicas"] == 1.0 and row["sets"] == 4 and row["refused_sets"] == 0
