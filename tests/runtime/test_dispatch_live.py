"""Dispatch at arrival (``train.dispatch = "arrival"``): a worker gets its next round's tasks as
soon as its own results arrive. Runs stay exact and end with the parameters of round dispatch."""

import pytest
from runtime_helpers import BURSTY, config, rel

from gcode.runtime import train

pytestmark = pytest.mark.ray

UNCODED = {"name": "uncoded"}
GC_FR = {"name": "gc", "s": 1, "gc_code": "fr"}
MSGC_FR = {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}


@pytest.mark.parametrize("scheme, models", [(UNCODED, 2), (GC_FR, 2), (MSGC_FR, 3)])
def test_arrival_dispatch_trains_the_models_of_round_dispatch(ray_pool, scheme, models):
    runs = {d: train(config(scheme=scheme, inject=BURSTY,
                            train={"dispatch": d, "models": models}), pool=ray_pool)
            for d in ("round", "arrival")}
    assert runs["round"]["dispatched_at_arrival"] == 0
    assert runs["arrival"]["dispatched_at_arrival"] > 0
    for res in runs.values():
        assert res["decoded_jobs"] == 12 and res["max_decode_rel_error"] < 1e-6
    for a, b in zip(runs["arrival"]["param_checksum"], runs["round"]["param_checksum"]):
        assert rel(a, b) < 1e-6


def test_arrival_dispatch_over_the_ray_transport(ray_pool):
    """Actor calls and the object store (the multi-node transport) instead of shared memory."""
    arrival = {"dispatch": "arrival", "models": 3}
    runs = {d: train(config(scheme=MSGC_FR, inject=BURSTY, cluster={"transport": "ray"},
                            train={**arrival, "dispatch": d}), pool=ray_pool)
            for d in ("round", "arrival")}
    assert runs["arrival"]["transport"] == "ray" and runs["arrival"]["dispatched_at_arrival"] > 0
    assert runs["arrival"]["param_checksum"] == runs["round"]["param_checksum"]


def test_uncoded_workers_get_every_round_but_the_first_at_arrival(ray_pool, tmp_path):
    """Uncoded waits for everyone, so each of rounds 1..11 goes out at the workers' arrivals,
    except the rounds at which a checkpoint falls (4 and 8): those start together."""
    workers, jobs = 4, 12
    res = train(config(scheme=UNCODED, train={"dispatch": "arrival"}), pool=ray_pool)
    assert res["dispatched_at_arrival"] == workers * (jobs - 1)
    checkpointed = train(config(scheme=UNCODED, train={"dispatch": "arrival"},
                                checkpoint={"dir": str(tmp_path), "every": 4}), pool=ray_pool)
    assert checkpointed["dispatched_at_arrival"] == workers * (jobs - 1 - 2)
    assert checkpointed["param_checksum"] == res["param_checksum"]


def test_the_round_log_shows_each_head_start(ray_pool, tmp_path):
    import json
    log = tmp_path / "rounds.jsonl"
    train(config(scheme=MSGC_FR, inject=BURSTY, train={"dispatch": "arrival", "models": 3},
                 log={"jsonl": str(log)}), pool=ray_pool)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    starts = [r["head_start_s"] for r in records if "head_start_s" in r]
    assert starts and all(s >= 0 for heads in starts for s in heads.values())
    assert "head_start_s" not in records[0]  # round 0 has no round before it


def test_faults_under_arrival_dispatch_keep_the_run_exact(ray_pool):
    """A worker that returns NaN, one killed, and one that raises, each in a round whose tasks
    it got at its previous arrival: stragglers or retries as under round dispatch, and the run
    ends with the fault-free parameters (FR codes: the same fp64 sums whoever arrived)."""
    faults = [{"round": 3, "worker": 1, "kind": "nan"}, {"round": 6, "worker": 2, "kind": "kill"},
              {"round": 8, "worker": 0, "kind": "raise"}]
    arrival = {"dispatch": "arrival", "models": 3}
    clean = train(config(scheme=MSGC_FR, train=arrival), pool=ray_pool)
    res = train(config(scheme=MSGC_FR, train=arrival, faults=faults), pool=ray_pool)
    assert res["dispatched_at_arrival"] > 0 and res["decoded_jobs"] == 12
    assert {(f["round"], f["worker"]) for f in res["failures"]} >= {(3, 1), (8, 0)}
    assert res["param_checksum"] == clean["param_checksum"]


def test_a_nan_result_is_never_followed_by_an_arrival_dispatch(ray_pool, tmp_path):
    """Worker 1's round-3 result is NaN. Its finite check is deferred, and its round-4 tasks
    wait for it: the check fails, and with a long retry backoff the round ends without worker
    1. Round 4 then sends worker 1 the tasks its straggling calls for (sent at
    the failed arrival, they would differ: the run would stop), and the run still ends with
    the fault-free parameters. The paper policy with a generous mu cuts no on-time worker, so
    the window's budget is free for worker 1, and the round ends once everyone reported."""
    import json
    arrival = {"dispatch": "arrival", "models": 3}
    slow_retry = {"retry_backoff_s": 5.0}
    patient = {"name": "paper", "mu": 20.0}
    clean = train(config(scheme=MSGC_FR, train=arrival, policy=patient),
                  pool=ray_pool)
    log = tmp_path / "rounds.jsonl"
    res = train(config(scheme=MSGC_FR, train=arrival, policy=patient,
                       cluster=slow_retry, faults=[{"round": 3, "worker": 1, "kind": "nan"}],
                       log={"jsonl": str(log)}), pool=ray_pool)
    records = {r["round"]: r for r in map(json.loads, log.read_text().splitlines())}
    assert 1 in records[3]["stragglers"] and res["dispatched_at_arrival"] > 0
    assert res["decoded_jobs"] == 12 and res["max_decode_rel_error"] < 1e-6
    assert res["param_checksum"] == clean["param_checksum"]
