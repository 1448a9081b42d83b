"""`gcode bench scale` measures the real simulator and bookkeeping and writes its outputs."""

import json

import numpy as np
import pytest

from gcode.bench.scale import ROWS, markdown_table, plot, run_scale_bench, synthetic_trace
from gcode.cli import main
from gcode.codes import make_scheme
from gcode.sim import PaperPolicy, simulate
from gcode.sim.load_model import LoadModel


@pytest.mark.slow
def test_bench_scale_small(tmp_path):
    result = run_scale_bench(ns=(16, 48), rounds=12, book_rounds=3,
                             end_to_end=[["--scheme", "gc", "--s", "2", "--gc-code", "fr"]])
    assert len(result["rows"]) == 2 * len(ROWS)
    for row in result["rows"]:
        assert row["sim_us_per_worker_round"] > 0 and row["book_us_per_worker_round"] > 0
        assert row["sim_peak_mb"] >= 0 and row["book_rounds"] == 3
    # the simulator row is the real simulation of that scheme on the synthetic trace
    row = next(r for r in result["rows"] if r["n"] == 48 and r["label"] == "msgc fr")
    scheme = make_scheme("msgc", n=48, jobs=8, **row["params"])
    again = simulate(scheme, synthetic_trace(12, 48), PaperPolicy(1.0),
                     LoadModel("additive", result["load_slope"]))
    assert (again.runtime_s, again.waits) == (row["runtime_s"], row["waits"])
    assert [(r["trace_format"], r["n"]) for r in result["end_to_end"]] == [("csv", 48), ("npy", 48)]
    assert all(r["wall_s"] > 0 and r["peak_rss_mb"] > 10 for r in result["end_to_end"])
    table = markdown_table(result)
    assert "Coordinator bookkeeping" in table and "| msgc cyclic |" in table and "npy" in table
    png = plot(result, tmp_path)[0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert np.isfinite([r["sim_s"] for r in result["rows"]]).all()


@pytest.mark.slow
def test_bench_scale_cli_skips_what_is_beyond_its_limits(tmp_path, capsys):
    assert main(["bench", "scale", "--n", "24", "40", "--rounds", "10", "--book-rounds", "2",
                 "--cyclic-book-max-n", "30", "--no-end-to-end",
                 "--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    skipped = [r["label"] for r in result["rows"] if "book_skipped" in r]
    assert skipped == ["gc cyclic", "srsgc cyclic", "msgc cyclic"]
    assert [(r["n"], "skipped" in r, "book_skipped" in r) for r in result["rows"] if r["label"] == "auto"] \
        == [(24, False, False), (40, False, False)]  # the auto scheme is timed at every n
    assert (tmp_path / "bench_scale.md").read_text().count("skipped") >= 3
    assert main(["bench", "scale", "--n", "1", "--out", str(tmp_path)]) == 2
