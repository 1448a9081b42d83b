"""The two transports: the same models through shared memory and through Ray, a worker that dies
under shared memory (calls go through Ray until it attaches again), and the shared-memory
invariants (a parameter region whose tag changed makes a call stale; a result buffer is never
lent again while an array of its result is alive)."""

import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_helpers import BURSTY, config, rel

from gcode.runtime import train
from gcode.runtime.wire import Call, Result, WireTask

pytestmark = pytest.mark.ray

MSGC_FR = {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}


@pytest.mark.parametrize("scheme", [{"name": "uncoded"}, MSGC_FR])
def test_shm_and_ray_transports_train_the_same_models(ray_pool, scheme):
    runs = {t: train(config(scheme=scheme, inject=BURSTY, cluster={"transport": t}),
                     pool=ray_pool) for t in ("shm", "ray")}
    assert runs["shm"]["transport"] == "shm" and runs["ray"]["transport"] == "ray"
    assert runs["shm"]["transport_calls"]["ray_calls"] == 0
    assert runs["shm"]["transport_calls"]["shm_calls"] >= 4 * runs["shm"]["rounds"]
    # every result buffer was made at setup (T+2 per worker), none inside a round
    made = runs["shm"]["transport_calls"]
    assert made["result_buffers_reserved"] == 4 * (runs["shm"]["delay_T"] + 2)
    assert made["result_buffers_made"] == 0
    assert runs["ray"]["transport_calls"]["shm_calls"] == 0
    for res in runs.values():
        assert res["decoded_jobs"] == 12 and res["max_decode_rel_error"] < 1e-6
    for got, want in zip(runs["shm"]["param_checksum"], runs["ray"]["param_checksum"],
                         strict=True):
        assert rel(got, want) <= 1e-6, (got, want)


def test_a_killed_worker_goes_through_ray_until_it_attaches_again(ray_pool):
    """Worker 1 is killed in round 2: its connection closes, that call fails, its calls go
    through Ray while Ray restarts it, and the restarted actor attaches again. Every job
    decodes, and the models equal a clean uncoded run's."""
    slow = {"model": "shifted_exp", "params": {"shift": 0.1, "rate": 1000.0}}  # ~8 s of rounds
    res = train(config(scheme={"name": "gc", "s": 1, "gc_code": "fr", "jobs": 80},
                       faults=[{"round": 2, "worker": 1, "kind": "kill"}], inject=slow,
                       cluster={"transport": "shm"}), pool=ray_pool)
    assert any(f["round"] == 2 and f["worker"] == 1 for f in res["failures"]), res["failures"]
    calls = res["transport_calls"]
    assert calls["ray_calls"] >= 1 and calls["reattached"] >= 1, calls
    assert calls["shm_calls"] > calls["ray_calls"]
    assert res["decoded_jobs"] == 80 and res["max_decode_rel_error"] < 1e-6
    clean = train(config(scheme={"name": "uncoded", "jobs": 80}, cluster={"transport": "ray"}),
                  pool=ray_pool)
    for got, want in zip(res["param_checksum"], clean["param_checksum"], strict=True):
        assert rel(got, want) <= 1e-6


@pytest.fixture()
def one_worker(ray_pool):
    """A ShmTransport to worker 0 of the pool, on a logistic-regression run context."""
    import ray

    from gcode.runtime.data import WorkSpec
    from gcode.runtime.run import preset_workload_of
    from gcode.runtime.transport.shm import ShmTransport
    from gcode.train import open_dataset
    workload = preset_workload_of(config())
    d = sum(p.numel() for p in workload.model_fn().parameters())
    spec = WorkSpec(workload=workload, seed=3, batch_size=240, num_params=d,
                    num_samples=len(open_dataset(workload.dataset_fn)))
    ctx = (uuid.uuid4().hex, ray.put(spec))
    ray_pool.prepare(ctx, 1, 60)
    transport = ShmTransport(ray_pool.actors[:1], ctx, 60)
    try:
        yield transport, ctx, d
    finally:
        transport.close()


def _send(one_worker, handle, r):
    """Worker 0 starts computing job ``handle.job``'s whole batch in round r."""
    transport, ctx, d = one_worker
    call = Call(ctx=ctx[0], round=r, tasks=(WireTask(handle.job, 0, (0,), (1.0,)),),
                jobs=(handle.job,), dtype="float32")
    return transport.call(0, call, False, [handle], d * 4)


def _call(one_worker, handle, r):
    """:func:`_send`, then its answer."""
    transport = one_worker[0]
    call = _send(one_worker, handle, r)
    assert transport.wait([call], 60) == [call]
    payload, err = transport.fetch([call])[0]
    assert err is None
    return payload, call


def test_a_parameter_region_holding_another_job_makes_the_call_stale(one_worker):
    from dataclasses import replace
    transport, _, d = one_worker
    handle = transport.put_job(5, np.zeros(d, np.float32), ((0, 240),))
    ok, _ = _call(one_worker, handle, 0)
    assert ok.status == "ok" and ok.grads.shape == (1, d)
    assert np.isfinite(ok.grads).all() and not ok.grads.flags.writeable
    stale, _ = _call(one_worker, replace(handle, job=6), 1)  # the region holds job 5
    assert stale.status == "stale"


def test_a_result_buffer_is_not_lent_while_its_array_lives(one_worker):
    transport, _, d = one_worker
    handle = transport.put_job(1, np.zeros(d, np.float32), ((0, 240),))
    first, call = _call(one_worker, handle, 0)
    kept = first.grads[0, 10:20]  # a view keeps the buffer's result alive
    del first
    second, call2 = _call(one_worker, handle, 1)
    assert call2.buffer != call.buffer
    np.testing.assert_array_equal(kept, second.grads[0, 10:20])  # same job, same gradient
    del kept, second
    _, call3 = _call(one_worker, handle, 2)
    assert call3.buffer in (call.buffer, call2.buffer)


def test_a_forgotten_call_gives_its_buffer_back_once_answered(one_worker):
    """A straggler call the coordinator stops tracking (its late list is bounded) keeps its
    buffer until the worker has answered, then gives it back."""
    transport, _, d = one_worker
    handle = transport.put_job(1, np.zeros(d, np.float32), ((0, 240),))
    call = _send(one_worker, handle, 0)
    transport.forget([call])
    assert transport.results.buffers[call.buffer].owner == call.seq  # the worker may still write it
    for _ in range(600):
        if call.seq not in transport.inflight:
            break
        transport.wait([], 0.1)  # reads the answers that come in for 0.1 s
    assert call.seq not in transport.inflight and call.seq not in transport.replies
    _, again = _call(one_worker, handle, 1)
    assert again.buffer == call.buffer


def test_the_device_validation_path_runs_on_the_cpu(ray_pool, monkeypatch):
    """A GPU coordinator checks results' values on the device, after their one copy there. The
    same torch path on the CPU: a NaN result is still a fault, and decoding stays exact."""
    from functools import partial

    from gcode.runtime.loop import compose
    monkeypatch.setattr(compose, "Decoder", partial(compose.Decoder, torch_math=True))
    res = train(config(scheme={"name": "gc", "s": 1, "gc_code": "fr"},
                       faults=[{"round": 3, "worker": 2, "kind": "nan"}]), pool=ray_pool)
    assert any(f["round"] == 3 and f["worker"] == 2 and "non-finite" in f["reason"]
               for f in res["failures"]), res["failures"]
    clean = train(config(scheme={"name": "uncoded"}), pool=ray_pool)
    assert res["decoded_jobs"] == 12 and res["max_decode_rel_error"] < 1e-6
    for got, want in zip(res["param_checksum"], clean["param_checksum"], strict=True):
        assert rel(got, want) <= 1e-6


# ---- the result-buffer pool under any order of events -----------------------------------
OPS = st.lists(st.tuples(st.sampled_from(["call", "answer", "error", "forget", "die", "drop"]),
                         st.integers(0, 3), st.integers(1, 3)), max_size=40)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, reserved=st.integers(0, 2))
def test_no_result_buffer_is_ever_lent_while_in_use(ray_pool, ops, reserved):
    """Calls start, are answered (their arrays kept or dropped), fail, are forgotten or lose
    their worker, in any order: a buffer is never lent to a second call while its first call
    is out or an array of its result lives, and every buffer comes back once both are over.
    Answers are delivered as the transport's reader does (``inflight`` -> ``replies``). With
    ``reserved`` buffers per worker made first (``reserve_results``), the same holds."""
    import gc

    from gcode.runtime.transport.shm import ShmCall, ShmTransport
    from gcode.runtime.transport.shm_frames import InBuffer
    transport = ShmTransport([], ("ctx", None), 5)
    transport.links.attaching = {w: None for w in range(4)}  # no actors: never re-attach
    transport.reserve_results(4, reserved, 3 * 64)
    reserved_by = {i: i // reserved for i in range(4 * reserved)} if reserved else {}
    try:
        out: list[ShmCall] = []       # calls not answered yet
        kept: dict[int, object] = {}  # buffer -> a live view of its last result
        sizes: dict[int, int] = {}    # call -> its result size (an answer may claim more)
        lenders: dict[int, int] = {}  # buffer -> the only worker whose calls borrow it
        for op, w, size in ops:
            if op == "call":
                seq = next(transport._seq)
                call = ShmCall(seq, w, transport.results.lend(size * 64, seq, w))
                assert all(c.buffer != call.buffer for c in out), "lent twice"
                owner = lenders.setdefault(call.buffer, reserved_by.get(call.buffer, w))
                assert owner == w, f"worker {w} borrowed worker {owner}'s buffer"
                assert call.buffer not in kept, "lent while its result lives"
                transport.inflight[seq] = call
                out.append(call)
                sizes[seq] = size
            elif op in ("answer", "error") and out:
                call = out.pop(0)
                reply = (Result(status="error", round=0, worker=w, error="raised X")
                         if op == "error" else
                         Result(status="ok", round=0, worker=w, grads=InBuffer((1, size * 16), "<f4")))
                del transport.inflight[call.seq]
                transport.replies[call.seq] = (reply, None)
                transport._drop_forgotten(call)
                if call.seq in transport.replies:  # not forgotten: the coordinator fetches it
                    payload = transport.fetch([call])[0][0]
                    if payload is not None and size <= sizes[call.seq]:  # else refused: shape
                        kept[call.buffer] = payload.grads[0, :1]
                    del payload, reply  # only ``kept`` holds the result now (reply is payload)
            elif op == "forget" and out:
                transport.forget([out[0]])
            elif op == "die":
                transport._lost(w)
                out = [c for c in out if c.worker != w]
            elif op == "drop" and kept:
                kept.pop(next(iter(kept)))
        kept.clear()
        gc.collect()
        owners = {b.owner for b in transport.results.buffers if b.owner is not None}
        assert owners <= set(transport.inflight), "a buffer outlived its call and its result"
    finally:
        transport.close()
