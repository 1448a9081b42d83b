"""Workers that read ahead (``cluster.prefetch = on``) train exactly the models of workers that
do not: the same batches, read on another thread. Uncoded rounds always reuse the batch read
ahead (each worker's next task is the same chunk of the next job)."""

import pytest
from runtime_helpers import BURSTY, config

from gcode.runtime import train

pytestmark = pytest.mark.ray

MSGC_FR = {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}


@pytest.mark.parametrize("scheme", [{"name": "uncoded"}, MSGC_FR])
def test_reading_ahead_trains_the_same_models(ray_pool, scheme):
    runs = {p: train(config(scheme=scheme, inject=BURSTY, cluster={"prefetch": p}), pool=ray_pool)
            for p in ("on", "off")}
    assert runs["on"]["prefetch"] is True and runs["off"]["prefetch"] is False
    assert runs["off"]["read_ahead_tasks"] == 0
    assert runs["on"]["read_ahead_tasks"] > 0
    for res in runs.values():
        assert res["decoded_jobs"] == 12 and res["max_decode_rel_error"] < 1e-6
    assert runs["on"]["param_checksum"] == runs["off"]["param_checksum"]


def test_uncoded_workers_read_every_batch_but_the_first_ahead(ray_pool):
    res = train(config(scheme={"name": "uncoded"}, cluster={"prefetch": "on"}), pool=ray_pool)
    workers, jobs = 4, 12
    assert res["read_ahead_tasks"] == workers * (jobs - 1)


def test_auto_reads_ahead_only_on_gpu_workers(ray_pool):
    assert train(config(scheme={"name": "uncoded", "jobs": 2}), pool=ray_pool)["prefetch"] is False
    cc = config(cluster={"gpus_per_worker": 0.5}).cluster
    off = config(cluster={"prefetch": "off", "gpus_per_worker": 0.5}).cluster
    assert cc.reads_ahead and not off.reads_ahead


def test_a_task_with_no_samples_reads_nothing(ray_pool):
    """A batch of 2 over 4 workers leaves two uncoded chunks empty: those tasks read no batch
    (ahead or not) and return zero gradients, with read-ahead on as off."""
    runs = {p: train(config(scheme={"name": "uncoded", "jobs": 4}, train={"batch_size": 2},
                            cluster={"prefetch": p}), pool=ray_pool) for p in ("on", "off")}
    for res in runs.values():
        assert res["decoded_jobs"] == 4 and res["max_decode_rel_error"] < 1e-6
    assert runs["on"]["param_checksum"] == runs["off"]["param_checksum"]
