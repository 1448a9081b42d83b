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
