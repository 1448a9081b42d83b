"""The collective data plane live (issue 26), on the session's Ray pool and gloo over loopback:
workers hold the replicas, report only losses, and allreduce their coded results.

Exactness: every coded scheme ends with the uncoded run's parameters within 1e-6 relative on
both planes, under injected stragglers; the replicas end bit-identical on every worker; a
checkpoint (taken from a replica, with the kept results of the jobs in flight) resumes to the
uninterrupted run's parameters bit for bit. ``check_decode`` compares every decoded job with
a directly computed gradient as on the star plane, and stops a coded run that misses; decoded
records carry the replicas' step (lr, grad_norm, clip_factor) as the star plane's do."""

import sys

import coupled_models
import pytest
from runtime_helpers import BURSTY, config, rel

import gcode
from gcode.runtime import train
from gcode.runtime.checkpoint import checkpoints_in, resume_config
from gcode.train import WorkloadError

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(coupled_models)  # workers cannot import tests/
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.ray

SCHEMES = {
    "gc-group": {"name": "gc", "s": 1, "gc_code": "group"},
    "gc-fr": {"name": "gc", "s": 1, "gc_code": "fr"},
    "gc-cyclic": {"name": "gc", "s": 1, "gc_code": "cyclic"},
    "srsgc": {"name": "srsgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"},
    "msgc": {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "cyclic"},
}
COLLECTIVE = {"data_plane": "collective"}
MSGC_FR = {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}


def run(pool, scheme, plane="collective", progress=None, **sections):
    return train(config(scheme=scheme, cluster={"data_plane": plane}, **sections), pool=pool,
                 progress=progress)


@pytest.fixture(scope="module")
def uncoded_star(ray_pool):
    res = run(ray_pool, {"name": "uncoded"}, "star")
    assert res["data_plane"] == "star" and res["replica_checksums"] is None
    return res


def same_models(res, ref, tol=1e-6):
    assert res["decoded_jobs"] == 12
    for got, want in zip(res["param_checksum"], ref["param_checksum"], strict=True):
        assert rel(got, want) <= tol, (got, want)


def test_uncoded_on_the_collective_plane_trains_the_star_planes_models(ray_pool, uncoded_star):
    res = run(ray_pool, {"name": "uncoded"}, train={"check_decode": False})  # it sends gradients
    assert res["data_plane"] == "collective" and res["transport"] == "collective"
    same_models(res, uncoded_star)
    assert set(res["replica_checksums"]) == {"model 0", "model 1"}
    # calls and losses only: far below one gradient (logistic on digits: 650 parameters)
    assert res["coordinator_bytes_per_round"] < 4 * res["num_params"] < uncoded_star[
        "coordinator_bytes_per_round"]


@pytest.mark.parametrize("name,check", [*[(name, False) for name in sorted(SCHEMES)],
                                        ("gc-cyclic", True), ("msgc", True)])
def test_coded_runs_on_the_collective_plane_end_with_the_uncoded_models(ray_pool, uncoded_star,
                                                                        name, check):
    """Without check_decode each decode rides on the workers' next calls; with it, the workers
    apply it at once (the check needs the sum)."""
    res = run(ray_pool, SCHEMES[name], inject=BURSTY, train={"check_decode": check})
    assert res["stragglers"] > 0
    same_models(res, uncoded_star)
    # without the check, decodes go out with the compute calls, and the workers are asked to
    # apply them apart only when the replicas are read (the end); with it, once per decode
    assert res["transport_calls"]["settles"] == (res["decoded_jobs"] if check else 1)


def test_dispatch_at_arrival_pushes_each_decode_to_the_busy_workers(ray_pool, uncoded_star):
    """A worker sent its next round at its arrival is computing when the round decodes: the
    decode goes to it at once rather than with its call after next (which would wait for it)."""
    res = run(ray_pool, {"name": "gc", "s": 1, "gc_code": "fr"}, inject=BURSTY,
              policy={"name": "earliest"}, train={"check_decode": False, "dispatch": "arrival"})
    assert res["dispatched_at_arrival"] > 0 and res["transport_calls"]["pushed_decodes"] > 0
    same_models(res, uncoded_star)


def test_delayed_mode_takes_each_jobs_parameters_before_the_replica_steps(ray_pool):
    """One model, jobs in flight on older parameters: both planes apply the same updates."""
    scheme = SCHEMES["msgc"]
    train_section = {"mode": "delayed", "models": None, "check_decode": False}
    star = run(ray_pool, scheme, "star", train=train_section)
    res = run(ray_pool, scheme, inject=BURSTY, train=train_section)
    assert rel(res["param_checksum"][0], star["param_checksum"][0]) <= 1e-6


def test_a_checkpoint_from_a_replica_resumes_bit_for_bit(ray_pool, tmp_path):
    """FR codes decode bit for bit whoever straggles. Jobs in flight at the checkpoint (M-SGC,
    T = 1) keep their results on the workers: the
    checkpoint fetches them, and the resumed run gives each worker its own back."""
    cfg = config(scheme=MSGC_FR, cluster=COLLECTIVE, inject=BURSTY,
                 train={"optimizer": "adam", "lr": 0.01, "check_decode": False})
    cfg = cfg.replace(**{"checkpoint.dir": str(tmp_path / "ck"), "checkpoint.every": 4,
                         "checkpoint.keep": 100})
    full = train(cfg, pool=ray_pool)
    assert [p.name for p in checkpoints_in(tmp_path / "ck")][:2] == ["round-00000004",
                                                                     "round-00000008"]
    rc = resume_config(tmp_path / "ck" / "round-00000004").replace(**{"checkpoint.dir": None})
    res = train(rc, pool=ray_pool)
    assert res["sessions"] == 2 and res["data_plane"] == "collective"
    assert res["param_checksum"] == full["param_checksum"]
    assert res["replica_checksums"] == full["replica_checksums"]


@pytest.mark.parametrize("check,victim", [(True, 1), (False, 1), (True, 0)])
def test_a_worker_sigkilled_mid_round_rejoins_and_the_run_ends_as_without_the_fault(
        ray_pool, tmp_path, check, victim):
    """Round 3: the victim and worker 2 sleep 1.5 s, two stragglers where gc s=1 takes one, so the round
    waits for them; 0.5 s into it the victim's process gets SIGKILL. Its failure is recorded, the
    group re-forms with the restarted actor (replicas from a peer by broadcast), its tasks are
    computed again, and the final parameters are the fault-free run's, bit for bit (FR). Both
    with decodes applied at once (check_decode) and riding on the next calls. With check_decode
    every job is checked, also when the victim is rank 0 (which sends the sums): a decode
    repeated after the fault is checked with a surviving rank's sum."""
    import os
    import signal
    import threading

    import numpy as np
    import ray
    times = np.full((12, 4), 0.01)
    times[3, victim] = times[3, 2] = 1.5
    trace = tmp_path / "trace.csv"
    np.savetxt(trace, times, delimiter=",")
    scheme = SCHEMES["gc-fr"]
    clean = run(ray_pool, scheme, train={"check_decode": check})
    pid = ray.get(ray_pool.actors[victim].ready.remote(), timeout=60)["pid"]
    timers, records = [], []

    def progress(rec):
        records.append(rec)  # round 3 starts right after round 2's record, or (the record waits
        # for its step's report, with round r+2's calls when rounds are pipelined, M = 2) as
        # round 1's is written
        if rec["round"] == (2 if check else 1):
            timers.append(threading.Timer(0.5, os.kill, args=(pid, signal.SIGKILL)))
            timers[-1].start()
    res = train(config(scheme=scheme, cluster=COLLECTIVE, inject={"trace": str(trace)},
                       train={"check_decode": check}), pool=ray_pool, progress=progress)
    for t in timers:
        t.join()
    died = [f for f in res["failures"] if f["worker"] == victim and "died" in f["reason"]]
    assert died and died[0]["round"] == 3, res["failures"]
    if check:
        checked = sorted(j["job"] for rec in records for j in rec["decoded"] if "rel_error" in j)
        assert checked == list(range(12)) and res["max_decode_rel_error"] <= 1e-6
    assert res["transport_calls"]["regroups"] >= 1
    assert res["decoded_jobs"] == 12
    assert res["param_checksum"] == clean["param_checksum"]
    assert res["replica_checksums"] == clean["replica_checksums"]


def test_check_decode_and_the_step_records_match_the_star_planes(ray_pool):
    """Every decoded job is checked against a directly computed gradient (rank 0 sends its sum
    and the job's parameters), and its record carries rank 0's lr, grad_norm and clip_factor:
    the star plane's, job by job (clipping on, so clip_factor appears)."""
    def records(plane):
        recs = []
        res = run(ray_pool, SCHEMES["gc-fr"], plane, train={"max_grad_norm": 0.05},
                  progress=recs.append)
        return res, {j["job"]: j for rec in recs for j in rec["decoded"]}
    star, star_jobs = records("star")
    res, jobs = records("collective")
    assert res["max_decode_rel_error"] is not None and res["max_decode_rel_error"] <= 1e-6
    assert sorted(jobs) == sorted(star_jobs) == list(range(12))
    for t, want in star_jobs.items():
        got = jobs[t]
        assert got["rel_error"] <= 1e-6 and got["lr"] == want["lr"]
        assert rel(got["grad_norm"], want["grad_norm"]) <= 1e-6
        assert ("clip_factor" in got) == ("clip_factor" in want)
        assert rel(got.get("clip_factor", 1.0), want.get("clip_factor", 1.0)) <= 1e-6
    assert any("clip_factor" in j for j in jobs.values())
    same_models(res, star)


def test_check_decode_stops_a_coded_run_that_misses(ray_pool, monkeypatch):
    """With the startup probe off, a BatchNorm model (its chunks' gradients depend on the batch
    they are computed in) reaches round 0; the first decode's check stops the run as the star
    plane's does."""
    from gcode.runtime.probe import StartupProbe
    monkeypatch.setattr(StartupProbe, "run", lambda *args: None)
    with pytest.raises(WorkloadError, match=r"check_decode: job 0's decoded gradient misses .*"
                                            r"BatchNorm1d layer '1'"):
        gcode.fit(coupled_models.batchnorm_net, coupled_models.cross_entropy, coupled_models.Blobs,
                  coupled_models.sgd, coding=gcode.CodingConfig(scheme="gc", s=1, gc_code="fr"),
                  scaling=gcode.ScalingConfig(workers=4, round_timeout_s=60,
                                              data_plane="collective"),
                  run=gcode.RunConfig(jobs=3, batch_size=96, check_decode=True), progress=False,
                  pool=ray_pool)


@pytest.mark.parametrize("check", [True, False])
def test_a_worker_that_stalls_past_the_bound_is_regrouped_and_the_run_ends_as_without_it(ray_pool,
                                                                                        check):
    """Once round 2's record is written, worker 1's event loop is blocked (a real sleep run on
    the actor through Ray's ``__ray_call__``) for three times the round's bound
    (cluster.round_timeout_s), so it enters neither its next call nor the next allreduce in
    time: gc s=1 ends a round without it, the peers' allreduce times out (at half the round's
    bound), the group re-forms once the worker answers, the decode is repeated, and the final
    parameters are the fault-free run's, bit for bit (FR)."""
    import time
    bound = 6
    scheme = SCHEMES["gc-fr"]
    cfg = config(scheme=scheme, cluster={"data_plane": "collective", "round_timeout_s": bound},
                 train={"check_decode": check})
    clean = train(cfg, pool=ray_pool)
    victim = ray_pool.actors[1]
    stalls = []

    def progress(rec):
        if rec["round"] == 2:  # round 3 is dispatched right after this returns
            stalls.append(victim.__ray_call__.remote(lambda worker, s: time.sleep(s), 3 * bound))
    res = train(cfg, pool=ray_pool, progress=progress)
    ray.get(stalls, timeout=120)
    assert res["transport_calls"]["regroups"] >= 1
    assert res["transport_calls"]["repeated_decodes"] >= 1
    assert res["decoded_jobs"] == 12
    assert res["param_checksum"] == clean["param_checksum"]
    assert res["replica_checksums"] == clean["replica_checksums"]
