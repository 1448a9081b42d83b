"""The coordinator's loop through the in-process transport (fake workers computing real torch
gradients on a virtual clock, :mod:`gcode.runtime.transport.inprocess`): no Ray, milliseconds
per run, the same straggler pattern every time.

Every run here is checked for exactness, not only that it ran: a coded run ends with the
parameters of the uncoded run within 1e-6, and FR codes end bit for bit as they do without
stragglers."""

import pytest
from runtime_helpers import config, rel

from gcode.runtime.run import execute, preset_workload_of
from gcode.runtime.transport.inprocess import Script

GC_FR = {"name": "gc", "s": 1, "gc_code": "fr"}
GC_CYCLIC = {"name": "gc", "s": 1, "gc_code": "cyclic"}
SRSGC_FR = {"name": "srsgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}
MSGC_FR = {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}
MSGC_CYCLIC = {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "cyclic"}
#: one straggler per window of two rounds (worker r mod 4 in odd rounds), which (B, W, lam) =
#: (1, 2, 1) and s = 1 tolerate: 40 ms against 2 ms of compute
STRAGGLERS = Script(delays={(r, r % 4): 0.04 for r in range(1, 40, 2)})


def run(scheme=None, script=None, **sections):
    cfg = config(scheme=scheme or {"name": "uncoded"}, **sections)
    return execute(cfg, preset_workload_of(cfg), in_process=script or Script())[0]


@pytest.fixture(scope="module")
def uncoded():
    res = run()
    assert res["decoded_jobs"] == 12 and res["stragglers"] == 0 and res["transport"] == "inprocess"
    return res


def same_models(res, ref, tol=1e-6):
    assert res["decoded_jobs"] == 12 and res["max_decode_rel_error"] < 1e-6
    for got, want in zip(res["param_checksum"], ref["param_checksum"], strict=True):
        assert rel(got, want) <= tol, (got, want)


@pytest.mark.parametrize("scheme", [GC_FR, GC_CYCLIC, SRSGC_FR, MSGC_FR, MSGC_CYCLIC])
def test_coded_runs_under_stragglers_end_with_the_uncoded_models(uncoded, scheme):
    res = run(scheme, STRAGGLERS)
    assert res["stragglers"] > 0 and res["waits"] == 0
    same_models(res, uncoded)


def test_the_same_script_gives_the_same_run():
    a, b = run(MSGC_FR, STRAGGLERS), run(MSGC_FR, STRAGGLERS)
    assert a["param_checksum"] == b["param_checksum"]
    assert a["durations_s"] == b["durations_s"] and a["stragglers"] == b["stragglers"]


@pytest.mark.parametrize("scheme", [GC_FR, MSGC_FR])
def test_fr_codes_decode_bit_for_bit_whoever_straggles(scheme):
    """FR codes sum the same fp32 vectors whichever workers straggle."""
    assert run(scheme, STRAGGLERS)["param_checksum"] == run(scheme)["param_checksum"]


@pytest.mark.parametrize("kind", ["raise", "exit", "kill", "nan", "shape", "tag"])
def test_a_failed_worker_is_retried_and_the_run_stays_exact(uncoded, kind):
    res = run(GC_FR, faults=[{"round": 3, "worker": 2, "kind": kind}])
    failed = [f for f in res["failures"] if f["round"] == 3 and f["worker"] == 2]
    assert failed, res["failures"]
    if kind == "nan":
        assert "non-finite" in failed[0]["reason"]
    if kind in ("exit", "kill"):
        assert res["restarts"] == {"2": 1}
    same_models(res, uncoded)


def test_a_worker_that_dies_mid_call_restarts_and_is_sent_the_context_again(uncoded):
    res = run(GC_FR, Script(deaths={(2, 1)}))
    assert [f["reason"] for f in res["failures"]] == ["died (killed)"]
    assert res["restarts"] == {"1": 1} and res["transport_calls"]["deaths"] == 1
    same_models(res, uncoded)


def test_a_late_result_is_used_in_a_later_round(uncoded):
    """Calls take 20 ms to reach a worker and 8 ms to compute. Worker 0 is 40 ms late in round 2:
    cut at 56 ms, it answers at 68 ms, before round 3's call reaches it (76 ms), so its result
    arrives during round 3 and is used at round 4's start (scheme.accept_late)."""
    res = run(MSGC_FR, Script(latency_s=0.02, delays={(2, 0): 0.04}),
              policy={"name": "paper", "mu": 1.0})
    assert res["late_results_used"] == 1 and res["stragglers"] == 1
    same_models(res, uncoded)


def test_pipelining_overlaps_rounds_and_changes_nothing(uncoded):
    on = run(MSGC_FR, STRAGGLERS, train={"models": 3})
    off = run(MSGC_FR, STRAGGLERS, train={"models": 3, "pipeline": False})
    assert on["pipelined_rounds"] > 0 and off["pipelined_rounds"] == 0
    assert on["param_checksum"] == off["param_checksum"]


@pytest.mark.parametrize("scheme, models", [({"name": "uncoded"}, 2), (GC_FR, 2), (MSGC_FR, 3)])
def test_arrival_dispatch_trains_the_models_of_round_dispatch(scheme, models):
    runs = {d: run(scheme, STRAGGLERS, train={"dispatch": d, "models": models})
            for d in ("round", "arrival")}
    assert runs["round"]["dispatched_at_arrival"] == 0
    assert runs["arrival"]["dispatched_at_arrival"] > 0
    assert runs["arrival"]["param_checksum"] == runs["round"]["param_checksum"]


def test_uncoded_workers_get_every_round_but_the_first_at_arrival():
    res = run(train={"dispatch": "arrival"})
    assert res["dispatched_at_arrival"] == 4 * (12 - 1)


def test_a_star_run_records_its_plane_and_the_bytes_through_the_coordinator(uncoded, tmp_path):
    """Each round of the star plane ships n calls with the job's fp32 parameters and takes n
    gradient rows back, so at least 2·n·d·4 bytes pass the coordinator per round."""
    from gcode.telemetry.runlog import read_run_log
    assert uncoded["data_plane"] == "star"
    n, d = uncoded["n"], uncoded["num_params"]
    assert uncoded["coordinator_bytes_per_round"] >= 2 * n * d * 4
    res = run(log={"run_log": str(tmp_path / "run")})
    summary = read_run_log(tmp_path / "run.pb").summary
    assert summary.data_plane == "star"
    assert summary.coordinator_bytes_per_round == res["coordinator_bytes_per_round"]
