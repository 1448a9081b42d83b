"""``cluster.zero = 1`` live (issue 26), on the session's Ray pool and gloo over loopback: each
worker steps its shard of every replica's optimizer state (Adam here) and the parameters are
all-gathered.

Exactness: zero=1 ends with zero=0's parameters bit for bit (uncoded, and FR codes whoever
straggles: gloo's reduce-scatter sums as its allreduce does, and Adam is element-wise), and
every coded scheme within 1e-6 of uncoded; the replicas' parameters end bit-identical on every
worker (the final check). A checkpoint keeps the zero=0 format (the optimizer state gathered
whole), so either setting resumes either's checkpoint exactly; a worker killed under zero=1
stops the run with one line naming the last checkpoint, and resuming from it ends as the
fault-free run."""

import sys

import pytest
from runtime_helpers import BURSTY, config, rel

from gcode.runtime import RunFailed, train
from gcode.runtime.checkpoint import resume_config

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.ray

FR = {"name": "gc", "s": 1, "gc_code": "fr"}
CODED = {"gc-cyclic": {"name": "gc", "s": 1, "gc_code": "cyclic"},
         "msgc": {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "cyclic"}}
ADAM = {"optimizer": "adam", "lr": 0.01, "check_decode": False}


def zero_run(pool, scheme, zero, *, train_section=None, progress=None, **sections):
    cfg = config(scheme=scheme, cluster={"data_plane": "collective", "zero": zero},
                 train={**ADAM, **(train_section or {})}, **sections)
    return train(cfg, pool=pool, progress=progress)


@pytest.fixture(scope="module")
def fr_zero0(ray_pool, tmp_path_factory):
    """gc FR on zero=0, checkpointed every 4 rounds (a zero=0 checkpoint to resume with zero=1)."""
    ck = tmp_path_factory.mktemp("zero0") / "ck"
    res = zero_run(ray_pool, FR, 0, checkpoint={"dir": str(ck), "every": 4, "keep": 100})
    return res, ck


def test_zero1_ends_with_zero0s_parameters(ray_pool, fr_zero0):
    """Uncoded (with check_decode: rank 0 gathers the whole sum) and FR under stragglers equal
    zero=0 bit for bit; cyclic GC and M-SGC within 1e-6 of uncoded."""
    ref, _ = fr_zero0
    uncoded0 = zero_run(ray_pool, {"name": "uncoded"}, 0)
    uncoded1 = zero_run(ray_pool, {"name": "uncoded"}, 1, train_section={"check_decode": True})
    assert uncoded1["zero"] == 1 and uncoded1["decoded_jobs"] == 12
    assert uncoded1["param_checksum"] == uncoded0["param_checksum"]
    assert set(uncoded1["replica_checksums"]) == {"model 0", "model 1"}  # parameters only
    fr = zero_run(ray_pool, FR, 1, inject=BURSTY)
    assert fr["stragglers"] > 0 and fr["param_checksum"] == ref["param_checksum"]
    for name, scheme in CODED.items():
        res = zero_run(ray_pool, scheme, 1, inject=BURSTY)
        for got, want in zip(res["param_checksum"], uncoded0["param_checksum"], strict=True):
            assert rel(got, want) <= 1e-6, (name, got, want)


def test_either_setting_resumes_either_checkpoint_and_a_lost_shard_stops_the_run(ray_pool, fr_zero0,
                                                                               tmp_path):
    """A zero=0 checkpoint resumed with zero=1; a zero=1 run checkpointed at round 4 and killed
    in round 6 (the dead worker's shards are gone: RunFailed naming round 4), resumed with
    zero=1 and with zero=0: all end with the fault-free zero=0 parameters, bit for bit (FR)."""
    import os
    import signal
    import threading

    import numpy as np
    ref, ck0 = fr_zero0
    at4 = resume_config(ck0 / "round-00000004").replace(**{"checkpoint.dir": None, "cluster.zero": 1})
    assert train(at4, pool=ray_pool)["param_checksum"] == ref["param_checksum"]

    times = np.full((12, 4), 0.01)
    times[6, 1] = times[6, 2] = 1.5  # round 6 waits for workers 1 and 2: the kill lands in it
    trace = tmp_path / "trace.csv"
    np.savetxt(trace, times, delimiter=",")
    pid = ray.get(ray_pool.actors[1].ready.remote(), timeout=60)["pid"]
    timers = []

    def progress(rec):  # round 4's record comes with round 6's calls (pipelined, M = 2)
        if rec["round"] == 4:
            timers.append(threading.Timer(0.5, os.kill, args=(pid, signal.SIGKILL)))
            timers[-1].start()
    ck1 = tmp_path / "ck"
    with pytest.raises(RunFailed, match=r"cluster.zero=1, which cannot repair it .* the last "
                                        r"checkpoint is .*round-00000004"):
        zero_run(ray_pool, FR, 1, progress=progress, inject={"trace": str(trace)},
                 checkpoint={"dir": str(ck1), "every": 4, "keep": 100})
    for t in timers:
        t.join()
    for zero in (1, 0):
        rc = resume_config(ck1 / "round-00000004").replace(**{"checkpoint.dir": None,
                                                              "cluster.zero": zero})
        assert train(rc, pool=ray_pool)["param_checksum"] == ref["param_checksum"], zero
