"""Live runs on the session's Ray pool: exactness against uncoded, failures, stale work, modes,
logs and the CLI entry point."""

import argparse
import json

import numpy as np
import pytest
from runtime_helpers import BURSTY, config, rel

from gcode.cli.train import add_train_arguments, run_from_args
from gcode.runtime import train
from gcode.runtime.loop.jsonl_log import read_jsonl

pytestmark = pytest.mark.ray

CODED = {
    "gc": {"name": "gc", "s": 1},
    "srsgc": {"name": "srsgc", "B": 1, "W": 2, "lam": 1},
    "msgc": {"name": "msgc", "B": 1, "W": 2, "lam": 1},
}


@pytest.fixture(scope="module")
def uncoded(ray_pool):
    """Reference: uncoded, no stragglers injected; 2 models x 6 updates."""
    return train(config(scheme={"name": "uncoded"}), pool=ray_pool)


def test_uncoded_reference_run(uncoded):
    assert uncoded["decoded_jobs"] == 12 and uncoded["updates_per_model"] == [6, 6]
    assert uncoded["max_decode_rel_error"] < 1e-5
    assert not uncoded["approximate"]
    assert all(np.isfinite(uncoded["final_loss"]))


@pytest.mark.parametrize("scheme", sorted(CODED))
def test_exact_same_params_as_uncoded_under_injected_stragglers(ray_pool, uncoded, scheme):
    res = train(config(scheme=CODED[scheme], inject=BURSTY), pool=ray_pool)
    assert res["stragglers"] > 0, "the injection must actually create stragglers"
    assert res["decoded_jobs"] == 12 and res["updates_per_model"] == [6, 6]
    assert res["max_decode_rel_error"] < 1e-5
    for got, want in zip(res["param_checksum"], uncoded["param_checksum"]):
        assert rel(got, want) <= 1e-5, (scheme, got, want)


@pytest.mark.parametrize("scheme, models", [("uncoded", 2), ("msgc", 3)])
def test_pipelined_rounds_train_the_same_models(ray_pool, scheme, models):
    """With M = T+2, round r+1 is dispatched before round r's decodes and steps (they overlap
    the workers' compute); every job still starts from the same parameters, so the models
    equal those of the same run without pipelining."""
    sc = CODED.get(scheme, {"name": scheme})
    on = train(config(scheme=sc, inject=BURSTY, train={"models": models}), pool=ray_pool)
    off = train(config(scheme=sc, inject=BURSTY, train={"models": models, "pipeline": False}),
                pool=ray_pool)
    assert on["pipelined_rounds"] >= on["rounds"] // 2 and off["pipelined_rounds"] == 0
    assert 0 <= on["exposed_overhead_s_per_round"] <= on["overhead_s_per_round"]
    assert off["exposed_overhead_s_per_round"] == pytest.approx(off["overhead_s_per_round"])
    assert on["decoded_jobs"] == off["decoded_jobs"] == 12
    assert on["max_decode_rel_error"] < 1e-6
    for got, want in zip(on["param_checksum"], off["param_checksum"], strict=True):
        assert rel(got, want) <= 1e-6, (scheme, got, want)


# ---- failures: one run with every kind, then one assertion per kind -----------------------
FAULTS = [
    {"round": 2, "worker": 1, "kind": "raise"},
    {"round": 4, "worker": 2, "kind": "shape"},
    {"round": 6, "worker": 3, "kind": "nan"},
    {"round": 8, "worker": 0, "kind": "exit"},    # os._exit inside the task
    {"round": 14, "worker": 1, "kind": "kill"},   # ray.kill from outside
]


@pytest.fixture(scope="module")
def faulty(ray_pool, tmp_path_factory):
    log = tmp_path_factory.mktemp("faults") / "run.jsonl"
    import ray
    before = _pids(ray, ray_pool, 4)
    res = train(config(scheme={"name": "gc", "s": 1, "jobs": 20}, faults=FAULTS,
                       log={"jsonl": str(log)}, train={"models": 2}), pool=ray_pool)
    res["pids_before"] = before
    return res, {rec["round"]: rec for rec in read_jsonl(log)}


def _pids(ray, pool, n):
    """The actors' process ids, waiting (at most 120 s) for any that is restarting."""
    import time
    deadline = time.monotonic() + 120
    while True:
        try:
            return [info["pid"] for info in ray.get([a.ready.remote() for a in pool.actors[:n]],
                                                    timeout=120)]
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _failed(res, rnd, worker):
    return [f for f in res["failures"] if f["round"] == rnd and f["worker"] == worker]


def _not_used_in_round(records, rnd, worker):
    rec = records[rnd]
    return worker in rec["stragglers"] or rec["fell_back"]


@pytest.mark.parametrize("kind, reason", [("raise", "raised InjectedFault"),
                                          ("shape", "wrong shape"), ("nan", "non-finite")])
def test_bad_results_are_stragglers(faulty, kind, reason):
    res, records = faulty
    fault = next(f for f in FAULTS if f["kind"] == kind)
    events = _failed(res, fault["round"], fault["worker"])
    assert events and reason in events[0]["reason"]
    assert _not_used_in_round(records, fault["round"], fault["worker"])


@pytest.mark.parametrize("kind", ["exit", "kill"])
def test_dead_workers_restart_and_training_goes_on(faulty, kind, ray_pool):
    res, records = faulty
    fault = next(f for f in FAULTS if f["kind"] == kind)
    w = fault["worker"]
    lost = [f for f in res["failures"] if f["worker"] == w and f["round"] >= fault["round"]
            and ("died" in f["reason"] or "unprepared" in f["reason"])]
    if kind == "exit":  # dies inside the task: always seen in that round
        assert any(f["round"] == fault["round"] and "died" in f["reason"] for f in lost), lost
    # ray.kill is asynchronous: the task may finish first, and calls sent while the actor
    # restarts wait for it (then find it without the run's context: 'unprepared')
    for f in lost:
        assert _not_used_in_round(records, f["round"], w)
    # the worker came back as a new process: seen delivering by the coordinator (restarts), or,
    # when the run ended before its restart finished (a restart takes seconds, the remaining
    # rounds milliseconds), answering now from a new process
    if res["restarts"].get(str(w), 0) < 1:
        import ray
        assert _pids(ray, ray_pool, 4)[w] != res["pids_before"][w]


def test_failures_never_mis_decode(faulty, ray_pool):
    res, _ = faulty
    assert res["decoded_jobs"] == 20 and res["updates_per_model"] == [10, 10]
    assert res["max_decode_rel_error"] < 1e-5
    clean = train(config(scheme={"name": "uncoded", "jobs": 20}), pool=ray_pool)
    for got, want in zip(res["param_checksum"], clean["param_checksum"]):
        assert rel(got, want) <= 1e-5


# ---- stale work never blocks a later round ------------------------------------------------
def test_a_straggler_stuck_in_a_round_does_not_delay_the_next(ray_pool, tmp_path):
    trace = np.full((6, 4), 0.2)   # 0.2 s rounds: natural jitter stays far below the 2x cut
    trace[2, 3] = 30.0             # worker 3 would sleep 30 s in round 2
    path = tmp_path / "stuck.csv"
    path.write_text("\n".join(",".join(f"{v}" for v in row) for row in trace))
    log = tmp_path / "stuck.jsonl"
    res = train(config(scheme={"name": "gc", "s": 1, "jobs": 6}, inject={"trace": str(path)},
                       log={"jsonl": str(log)}), pool=ray_pool)
    records = read_jsonl(log)
    assert records[2]["stragglers"] == [3] and records[2]["duration_s"] < 5
    assert "3" in records[3]["compute_s"]          # worker 3 delivered round 3
    assert records[3]["duration_s"] < 5            # nobody waited for the 30 s sleep
    assert res["runtime_s"] < 20 and res["decoded_jobs"] == 6
    # its call gave up when round 3 reached it, having computed: a later record says so
    replies = [c for rec in records for c in rec.get("cut_replies", [])]
    assert [(c["round"], c["worker"], c["sleep_s"]) for c in replies] == [(2, 3, 30.0)]
    assert 0 < replies[0]["compute_s"] < 5


# ---- modes, logs, progress, CLI -------------------------------------------------------------
def test_delayed_mode_is_one_model_and_labelled_approximate(ray_pool):
    res = train(config(scheme={"name": "msgc", "B": 1, "W": 3, "lam": 1, "jobs": 8},
                       train={"mode": "delayed", "models": None}, inject=BURSTY), pool=ray_pool)
    assert res["models"] == 1 and res["updates_per_model"] == [8]
    assert res["approximate"] and "delayed" in res["approximation"]
    assert res["max_decode_rel_error"] < 1e-5   # each gradient exact at its (stale) params


def test_default_models_is_T_plus_1_and_mlp_trains(ray_pool):
    res = train(config(scheme={"name": "msgc", "B": 2, "W": 3, "lam": 2, "jobs": 16},
                       train={"models": None, "model": "mlp", "optimizer": "adam", "lr": 0.01}),
                pool=ray_pool)
    assert res["delay_T"] == 3 and res["models"] == 4 and res["updates_per_model"] == [4] * 4
    assert res["max_decode_rel_error"] < 1e-5


def test_progress_hook_and_jsonl_log(ray_pool, tmp_path):
    seen = []
    log = tmp_path / "r.jsonl"
    res = train(config(log={"jsonl": str(log)}), pool=ray_pool, progress=seen.append)
    records = read_jsonl(log)
    assert len(seen) == len(records) == res["rounds"]
    assert [r["round"] for r in records] == list(range(res["rounds"]))
    assert records[-1]["decoded_jobs"] == 12
    for key in ("duration_s", "stragglers", "fell_back", "decoded", "loss", "compute_s"):
        assert key in records[0]


def test_cli_entry_point_prints_json(ray_pool, capsys, tmp_path):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["--workers", "4", "--jobs", "6", "--model", "logistic",
                              "--check-decode", "--json", "--quiet", "--scheme", "gc",
                              "--s", "1", "--log-jsonl", str(tmp_path / "cli.jsonl")])
    assert run_from_args(args, pool=ray_pool) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("runtime_s", "rounds", "waits", "decoded_jobs", "final_loss", "param_checksum",
                "max_decode_rel_error"):
        assert key in out
    assert out["decoded_jobs"] == 6 and len(out["param_checksum"]) == out["models"] == 1
    # --models T+2 pipelines every round after the first; --no-pipeline none
    for flags, pipelined in ((["--models", "2"], 5), (["--models", "2", "--no-pipeline"], 0)):
        args = parser.parse_args(["--workers", "4", "--jobs", "6", "--model", "logistic",
                                  "--json", "--quiet", "--scheme", "uncoded", *flags])
        assert run_from_args(args, pool=ray_pool) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["models"] == 2 and out["pipelined_rounds"] == pipelined


# ---- user-supplied model factory and dataset ---------------------------------------------------
def tiny_net(input_shape, num_classes, width=8):
    import math

    from torch import nn
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Tanh(),
                         nn.Linear(width, num_classes))


def test_user_model_factory_and_dataset(ray_pool):
    import sys

    from ray import cloudpickle

    from gcode.train import Dataset
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ship tiny_net to the workers
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    ds = Dataset.from_arrays(x, y, num_classes=2)
    res = train(config(scheme={"name": "gc", "s": 1, "jobs": 6},
                       train={"batch_size": 100, "models": 1, "model_params": {"width": 4}}),
                pool=ray_pool, dataset=ds, model_factory=tiny_net)
    assert res["num_params"] == 5 * 4 + 4 + 4 * 2 + 2
    assert res["decoded_jobs"] == 6 and res["max_decode_rel_error"] < 1e-5


# ---- partial-wait fallback, the online auto scheme, the telemetry run log -----------------------
@pytest.mark.parametrize("scheme, policy", [(CODED["msgc"], "partial"), (CODED["msgc"], "gap"),
                                            ({"name": "auto"}, "partial"),
                                            ({"name": "auto", "gc_code": "cyclic"}, "paper")])
def test_partial_policy_and_auto_scheme_stay_exact(ray_pool, uncoded, tmp_path, scheme, policy):
    from gcode.telemetry.runlog import read_run_log
    prefix = tmp_path / "run"
    res = train(config(scheme=scheme, policy={"name": policy}, inject=BURSTY,
                       log={"run_log": str(prefix)}), pool=ray_pool)
    assert res["decoded_jobs"] == 12 and res["updates_per_model"] == [6, 6]
    assert res["max_decode_rel_error"] < 1e-5
    for got, want in zip(res["param_checksum"], uncoded["param_checksum"]):
        assert rel(got, want) <= 1e-5
    _cfg, rounds, summary = read_run_log(prefix)
    assert len(rounds) == res["rounds"] and summary.decoded_jobs == 12
    assert [r.round for r in rounds] == list(range(res["rounds"]))
    assert sum(r.fell_back for r in rounds) == res["waits"]


def test_monitor_streams_rounds_and_a_stop_request_ends_the_run_early(ray_pool):
    from gcode.telemetry.monitor import MonitorClient, MonitorServer
    server = MonitorServer("127.0.0.1:0")
    client = MonitorClient(server.target)
    replies, early = [], {}

    def progress(rec):
        early[rec["round"]] = rec["next_started_early"]
        if rec["round"] == 3:
            replies.append(client.request_stop("test says stop", timeout=5.0))
    try:
        res = train(config(scheme={"name": "gc", "s": 1, "jobs": 12}), pool=ray_pool,
                    progress=progress, monitor=server)
        streamed = [r.round for r in client.follow(0, retries=0)]
    finally:
        client.close()
        server.close()
    assert replies and replies[0].accepted
    # the run ends after the rounds already dispatched: round 3, and round 4 when it started
    # early (pipelined) before round 3's report asked to stop
    last = 4 if early[3] else 3
    assert res["stopped"] and res["rounds"] == last + 1 and res["decoded_jobs"] == last + 1
    assert "test says stop" in res["stop_reason"]
    assert streamed == list(range(last + 1))


def test_a_tail_round_with_no_task_is_skipped(ray_pool, tmp_path):
    """SR-SGC's last round has work only for repeaters; with everyone in (policy 'all'), it has
    none, so nothing is dispatched and it takes no time, as in the simulator."""
    log = tmp_path / "srsgc.jsonl"
    res = train(config(scheme={"name": "srsgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"},
                       policy={"name": "all"}, log={"jsonl": str(log)}), pool=ray_pool)
    records = {rec["round"]: rec for rec in read_jsonl(log)}
    assert res["decoded_jobs"] == 12 and res["rounds"] == 13
    assert records[12]["duration_s"] == 0.0 and records[12]["arrival_s"] == {}
    assert all(records[r]["duration_s"] > 0 for r in range(12))
