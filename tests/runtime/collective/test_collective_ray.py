"""The collective plane on real Ray actors and gloo over loopback (4 workers): decoded sums
against direct sums, a straggler still computing while the allreduce completes, a member killed
mid-collective, ZeRO-1, and the replica check."""

import itertools
import time

import numpy as np
import pytest
from plane_actor import WORLD, chunk_grads, kill_all, start_actors

from gcode.codes import make_scheme
from gcode.runtime.collective import (
    CollectiveConfig,
    CollectiveError,
    GroupConfig,
    accumulate_dtype_for,
    form_group,
    leave_group,
    reform_group,
)
from gcode.sim.verify import random_conforming_stragglers

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NUMEL = 4099  # not a multiple of the world size: ZeRO-1 pads its shards
SEED = 0
CONFIG = CollectiveConfig(group=GroupConfig(timeout_s=60.0))
_generations = itertools.count()


@pytest.fixture(scope="module")
def actors(plane_ray):
    actors = start_actors(plane_ray, CONFIG, numel=NUMEL, max_restarts=2)
    yield actors
    kill_all(plane_ray, actors)


def regroup(ray, actors, config=CONFIG):
    """A fresh plane on every actor and a new generation of the group."""
    ray.get([a.configure.remote(config) for a in actors], timeout=60)
    return form_group(actors, config.group, next(_generations))


def truth(job: int, chunks: int) -> np.ndarray:
    return chunk_grads(SEED, job, chunks, NUMEL).astype(np.float64).sum(axis=0)


def run_round(ray, actors, scheme, r, stragglers):
    """Workers that are not stragglers compute and keep their coded results of round r."""
    plan = scheme.plan(r)
    dtype = np.dtype(scheme.message_dtype).name
    calls = [a.compute.remote(w, r, [(t.job, t.slot, t.chunks, t.coefficients,
                                      len(scheme.chunk_fractions_for(t.job))) for t in plan[w]], dtype)
             for w, a in enumerate(actors) if not stragglers[w]]
    ray.get(calls, timeout=120)
    scheme.record(r, ~stragglers)


def fold_all(ray, actors, decoding, t) -> list[int]:
    """Each worker folds the decode coefficients of its own results of job t."""
    pairs = [[] for _ in actors]
    for key, coefficient in decoding:
        pairs[key.worker].append((tuple(key), coefficient))
    return ray.get([a.fold.remote(t, p) for a, p in zip(actors, pairs)], timeout=120)


def reduce_all(ray, actors, job):
    return ray.get([a.reduce.remote(job) for a in actors], timeout=120)


def assert_exact(sums, job, chunks):
    assert all(np.array_equal(s, sums[0]) for s in sums), "replicas' sums differ"
    want = truth(job, chunks)
    assert np.linalg.norm(sums[0] - want) / np.linalg.norm(want) <= 1e-6


@pytest.mark.parametrize("name, params", [("gc", {"s": 1, "gc_code": "cyclic"}),
                                          ("msgc", {"B": 1, "W": 2, "lam": 2, "gc_code": "cyclic"}),
                                          ("srsgc", {"B": 1, "W": 2, "lam": 2, "gc_code": "fr"})])
def test_decoded_sum_equals_the_direct_sum(plane_ray, actors, name, params):
    scheme = make_scheme(name, n=WORLD, jobs=5, **params)
    config = CollectiveConfig(group=CONFIG.group, accumulate_dtype=accumulate_dtype_for(scheme.message_dtype))
    regroup(plane_ray, actors, config)
    rng = np.random.default_rng(1)
    decoded = 0
    for r in range(scheme.total_rounds):
        run_round(plane_ray, actors, scheme, r, random_conforming_stragglers(scheme, r, rng))
        for t in range(max(0, r - scheme.delay), r + 1):
            if scheme.decodable(t) and not scheme.is_decoded(t):
                pairs = [[] for _ in actors]  # fold and reduce as one request per worker
                for key, coefficient in scheme.decode(t):
                    pairs[key.worker].append((tuple(key), coefficient))
                sums = plane_ray.get([a.decode.remote(t, p) for a, p in zip(actors, pairs)], timeout=120)
                assert_exact(sums, t, len(scheme.chunk_fractions_for(t)))
                plane_ray.get([a.release.remote(t) for a in actors])
                decoded += 1
    assert decoded == scheme.jobs and np.asarray(scheme.history).any()  # some rounds had stragglers


def test_a_compute_straggler_takes_part_in_the_allreduce(plane_ray, actors):
    scheme = make_scheme("gc", n=WORLD, jobs=1, s=1, gc_code="cyclic")
    regroup(plane_ray, actors)
    stragglers = np.array([False, False, False, True])
    run_round(plane_ray, actors, scheme, 0, stragglers)
    decoding = scheme.decode(0)
    busy = actors[3].busy.remote()  # the straggler's compute thread is still working
    deadline = time.monotonic() + 120
    while not plane_ray.get(actors[3].is_computing.remote()):
        assert time.monotonic() < deadline, "the busy compute never started"
        time.sleep(0.05)
    fold_all(plane_ray, actors, decoding, 0)
    calls = [a.reduce.remote(0) for a in actors[:3]] + [actors[3].reduce_while_busy.remote(0)]
    *sums, straggler = plane_ray.get(calls, timeout=120)
    assert straggler["computing_at_end"], "the allreduce waited for the straggler's compute"
    assert_exact([*sums, straggler["sum"]], 0, len(scheme.chunk_fractions_for(0)))
    plane_ray.get(actors[3].end_busy.remote())
    assert plane_ray.get(busy, timeout=120) > 0


def test_member_killed_mid_collective_regroups_and_repeats_bit_identical(plane_ray, actors):
    scheme = make_scheme("gc", n=WORLD, jobs=1, s=1, gc_code="cyclic")
    config = CollectiveConfig(group=CONFIG.group, accumulate_dtype="float64")
    regroup(plane_ray, actors, config)
    stragglers = np.array([False, True, False, False])
    plan, chunks = scheme.plan(0), len(scheme.chunk_fractions_for(0))
    tasks = {w: [(t.job, t.slot, t.chunks, t.coefficients, chunks) for t in plan[w]] for w in range(WORLD)}
    run_round(plane_ray, actors, scheme, 0, stragglers)
    decoding = scheme.decode(0)
    fold_all(plane_ray, actors, decoding, 0)
    fault_free = reduce_all(plane_ray, actors, 0)
    assert_exact(fault_free, 0, chunks)
    plane_ray.get([a.release.remote(0) for a in actors])

    # the same job again; rank 2 dies while ranks 0, 1, 3 are inside its allreduce
    plane_ray.get([a.compute.remote(w, 0, tasks[w], "float64") for w, a in enumerate(actors) if w != 1])
    fold_all(plane_ray, actors, decoding, 0)
    survivors = [0, 1, 3]
    calls = {w: actors[w].reduce.remote(0) for w in survivors}
    deadline = time.monotonic() + 120
    while not all(plane_ray.get([actors[w].running.remote() for w in survivors])):
        assert time.monotonic() < deadline, "the survivors never entered the allreduce"
        time.sleep(0.05)
    old_pid = plane_ray.get(actors[2].pid.remote())
    plane_ray.kill(actors[2], no_restart=False)
    assert leave_group([actors[w] for w in survivors], 120) == []  # abort: no waiting for the timeout
    for w in survivors:
        with pytest.raises(plane_ray.exceptions.RayTaskError, match="allreduce of job 0 failed"):
            plane_ray.get(calls[w], timeout=120)
    with pytest.raises(CollectiveError):  # a dead group is refused, never entered again
        plane_ray.get(actors[0].reduce.remote(0), timeout=120)

    rdv = reform_group(actors, config.group, next(_generations), ready=lambda a: a.ready.remote())
    assert plane_ray.get(actors[2].pid.remote()) != old_pid  # restarted
    assert plane_ray.get([a.generation.remote() for a in actors]) == [rdv.generation] * WORLD
    # the restarted actor receives the replicas' state from a peer
    got = plane_ray.get([actors[0].receive_replica.remote(0, 7)] +
                        [a.receive_replica.remote(0, None) for a in actors[1:]], timeout=120)
    assert len({g["checksum"] for g in got}) == 1 and got[2]["keys"] == got[0]["keys"] == [0, 1, 2, 3]
    # it recomputes its lost result; the coordinator repeats the coefficients to everyone, and the
    # survivors' accumulators are kept (nothing folded twice)
    plane_ray.get(actors[2].compute.remote(2, 0, tasks[2], "float64"))
    folded = fold_all(plane_ray, actors, decoding, 0)
    assert folded[0] == folded[1] == folded[3] == 0 and folded[2] == len(tasks[2])
    repeated = reduce_all(plane_ray, actors, 0)
    assert all(np.array_equal(s, fault_free[0]) for s in repeated), "the repeated sum is not bit-identical"


def test_zero1_matches_the_replicated_step(plane_ray, actors):
    rng = np.random.default_rng(3)
    params = rng.standard_normal(NUMEL).astype(np.float32)
    grads = rng.standard_normal((WORLD, NUMEL))

    def step(zero):
        regroup(plane_ray, actors, CollectiveConfig(group=CONFIG.group, zero=zero))
        for w, a in enumerate(actors):
            plane_ray.get(a.keep_raw.remote((w, 0, 0), 0, grads[w]))
            plane_ray.get(a.fold.remote(0, [((w, 0, 0), 1.0)]))
        return plane_ray.get([a.zero_step.remote(0, params, zero, 1e-2) for a in actors], timeout=120)

    whole, sharded = step(0), step(1)
    assert all(np.array_equal(p, whole[0]) for p in whole)
    assert all(np.array_equal(p, sharded[0]) for p in sharded)  # all-gathered: bit-identical
    assert not np.array_equal(sharded[0], params)
    np.testing.assert_allclose(sharded[0], whole[0], rtol=1e-6, atol=1e-7)


def test_replica_mismatch_names_the_replica_and_rank(plane_ray, actors):
    regroup(plane_ray, actors)
    same = {"model 0": np.arange(10.0), "model 1": np.ones(3)}
    sums = plane_ray.get([a.check_replicas.remote(same) for a in actors], timeout=120)
    assert all(s == sums[0] for s in sums)
    odd = {"model 0": np.arange(10.0), "model 1": np.array([1.0, 1.0, 1.0 + 1e-12])}
    calls = [a.check_replicas.remote(odd if w == 2 else same) for w, a in enumerate(actors)]
    for call in calls:
        with pytest.raises(plane_ray.exceptions.RayTaskError) as info:
            plane_ray.get(call, timeout=120)
        line = str(info.value).strip().splitlines()[-1]
        assert "replica 'model 1' differs on rank(s) [2] from the other 3 rank(s)" in line
