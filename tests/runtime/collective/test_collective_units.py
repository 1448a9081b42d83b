"""The collective plane's parts without Ray: accumulators, state trees, configs, and a one-rank
gloo group in this process."""

import threading

import numpy as np
import pytest
import torch

from gcode.runtime.collective import (
    CollectiveConfig,
    CollectiveError,
    CollectivePlane,
    GroupConfig,
    JobAccumulators,
    Rendezvous,
    StaleGeneration,
    accumulate_dtype_for,
)
from gcode.runtime.collective.group import free_port, interface_of, resolve_backend
from gcode.runtime.collective.replicas import flatten_tree, unflatten_tree


def test_fold_accumulates_a_times_m_in_fp64_once_per_result():
    acc = JobAccumulators(3, torch.float64)
    m1 = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32)
    m2 = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    acc.keep(("w", 0, 0), 5, m1)
    acc.keep(("w", 1, 0), 5, m2)
    assert acc.fold(5, [(("w", 0, 0), 2.5)]) == 1
    assert acc.fold(5, [(("w", 0, 0), 2.5), (("w", 1, 0), -1e3)]) == 1  # a repeat is skipped
    want = 2.5 * m1.double() + -1e3 * m2
    assert torch.equal(acc.accumulator(5), want)
    assert acc.folded(5) == {("w", 0, 0): 2.5, ("w", 1, 0): -1e3}
    with pytest.raises(ValueError, match="folded with coefficient 2.5, now 3.0"):
        acc.fold(5, [(("w", 0, 0), 3.0)])
    with pytest.raises(KeyError, match="no kept result"):
        acc.fold(5, [(("w", 9, 0), 1.0)])
    acc.keep(("w", 2, 0), 6, m1)
    with pytest.raises(ValueError, match="belongs to job 6, not job 5"):
        acc.fold(5, [(("w", 2, 0), 1.0)])
    assert torch.count_nonzero(acc.accumulator(7)) == 0  # nothing folded: a straggler's zeros
    assert acc.jobs() == [5, 6, 7]
    acc.release(5)
    assert acc.jobs() == [6, 7] and not acc.has(("w", 0, 0)) and acc.has(("w", 2, 0))
    with pytest.raises(ValueError, match="has 2 values, the model 3"):
        acc.keep("k", 1, torch.zeros(2))


def test_a_lone_result_with_coefficient_1_is_its_accumulator_bit_for_bit_and_stays_unchanged():
    acc = JobAccumulators(4, torch.float32)
    m1 = torch.tensor([1.5, -0.0, 0.0, -2.0])
    m2 = torch.tensor([0.25, 1.0, -0.0, 3.0])
    acc.keep("a", 3, m1)
    acc.keep("b", 3, m2)
    assert acc.fold(3, [("a", 1.0)]) == 1
    want = torch.zeros(4).add_(m1, alpha=1.0)  # as a fresh accumulator would sum it: -0.0 -> 0.0
    copy = acc.copy(3)
    assert torch.equal(copy.view(torch.int32), want.view(torch.int32))
    copy.add_(1.0)  # an allreduce overwrites its copy, never the accumulator
    assert acc.fold(3, [("b", 1.0)]) == 1  # a second fold makes it a tensor of its own
    assert torch.equal(acc.accumulator(3).view(torch.int32), want.add_(m2).view(torch.int32))
    assert torch.equal(m1, torch.tensor([1.5, -0.0, 0.0, -2.0])) and m1[1].signbit()  # kept as kept
    assert torch.equal(acc.copy(9), torch.zeros(4))  # nothing folded: zeros


def test_accumulate_dtype_follows_the_message_dtype():
    assert accumulate_dtype_for(np.float64) == "float64" and accumulate_dtype_for("float32") == "float32"
    with pytest.raises(ValueError, match="accumulate_dtype"):
        CollectiveConfig(accumulate_dtype="bfloat16")
    with pytest.raises(ValueError, match="zero must be 0 or 1"):
        CollectiveConfig(zero=2)
    with pytest.raises(ValueError, match="backend must be one of"):
        GroupConfig(backend="mpi")
    with pytest.raises(ValueError, match="timeout_s"):
        GroupConfig(timeout_s=0)
    assert resolve_backend("auto", torch.device("cpu")) == "gloo"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "nccl"
    with pytest.raises(ValueError, match="nccl needs each worker on a GPU"):
        resolve_backend("nccl", torch.device("cpu"))
    assert Rendezvous("::1", 5, 2, 0, "gloo", 1.0).init_method == "tcp://[::1]:5"
    assert interface_of("127.0.0.1") == "lo"


def test_state_tree_round_trip_keeps_int_keys():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    tree = {"model": model.state_dict(), "optimizer": opt.state_dict(), "note": [1, "a", None, 2.5]}
    skeleton, tensors = flatten_tree(tree)
    import json
    back = unflatten_tree(json.loads(json.dumps(skeleton)), [t.clone() for t in tensors])
    assert sorted(back["optimizer"]["state"]) == [0, 1] and back["note"] == [1, "a", None, 2.5]
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    fresh.load_state_dict(back["optimizer"])  # int keys map back to the parameters
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(TypeError, match="holds a object"):
        flatten_tree({"x": object()})


def test_one_rank_plane_in_process():
    plane = CollectivePlane(5, "cpu", CollectiveConfig(accumulate_dtype="float32"))
    try:
        with pytest.raises(StaleGeneration, match="allreduce of job 0 refused: this worker is in no group"):
            plane.reduce(0).result(timeout=60)
        rdv = Rendezvous("127.0.0.1", free_port("127.0.0.1"), 1, 3, "auto", 30.0)
        plane.join_group(rdv, 0).result(timeout=60)
        assert plane.generation == 3
        plane.keep((0, 0, 0), 0, torch.arange(5.0))
        assert plane.fold(0, [((0, 0, 0), 2.0)]).result(timeout=60) == 1
        total = plane.reduce(0).result(timeout=60)
        assert total.dtype == torch.float32 and torch.equal(total, 2 * torch.arange(5.0))
        assert set(plane.check_replicas({"m": [torch.ones(2)]}).result(timeout=60)) == {"m"}
        tree = plane.broadcast({"a": torch.ones(2), "b": 1}, 0).result(timeout=60)
        assert tree["b"] == 1
        hold = threading.Event()
        plane._thread.submit(hold.wait, 60)  # the thread is busy: what follows queues behind it
        joined = plane.join_group(Rendezvous("127.0.0.1", free_port("127.0.0.1"), 1, 4, "gloo", 30.0), 0)
        stale = plane.reduce(0)  # asked for in generation 3, runs after the worker joined 4
        hold.set()
        joined.result(timeout=60)
        with pytest.raises(CollectiveError, match="generation 3, but this worker is now in generation 4"):
            stale.result(timeout=60)
        plane.leave_group().result(timeout=60)
        with pytest.raises(StaleGeneration, match="in no group"):
            plane.reduce(0).result(timeout=60)
    finally:
        plane.close()


def test_every_rank_keeps_the_last_sums_so_a_survivor_answers_a_repeated_decode():
    """With check_decode every rank keeps the all-reduced sum and parameters of the last
    ARRAYS_KEPT jobs it stepped (only the rank asked sends them): a decode repeated after a fault
    gets them from whichever rank the coordinator asks, the same numbers as the first time."""
    from gcode.config import from_dict
    from gcode.runtime.data import WorkSpec
    from gcode.runtime.run import preset_workload_of
    from gcode.runtime.worker.replicas import ARRAYS_KEPT, ReplicaServer
    workload = preset_workload_of(from_dict({"train": {"model": "logistic", "optimizer": "sgd"}}))
    numel = sum(p.numel() for p in workload.model_fn().parameters())
    server = ReplicaServer(WorkSpec(workload=workload, num_params=numel), 1, False, "float32", "cpu")
    try:
        server.plane.join_group(Rendezvous("127.0.0.1", free_port("127.0.0.1"), 1, 0, "gloo", 30.0),
                                0).result(timeout=60)

        def decode(job, send):
            return {"seq": job, "job": job, "model": 0, "pairs": [[(0, job, 0), 1.0, None]],
                    "snapshot": [], "scale": 1.0, "check": False, "bounds": (), "dtype": "float32",
                    "send_decoded": send, "gather_sum": True, "unreached": []}

        sent = {}
        for job in range(ARRAYS_KEPT + 1):
            server.keep((0, job, 0), job, torch.full((numel,), float(job + 1)))
            first = server.apply(decode(job, send=False), recompute=None)
            assert "decoded" not in first and first["finite"]  # kept here, not sent
            again = server.apply(decode(job, send=True), recompute=None)  # repeated: not stepped
            assert again["repeated"] and np.array_equal(again["decoded"], np.full(numel, job + 1.0))
            sent[job] = again["params"]
        assert not np.array_equal(sent[0], sent[ARRAYS_KEPT])  # each job's own parameters
        oldest = server.apply(decode(0, send=True), recompute=None)  # past the last ARRAYS_KEPT
        assert oldest["repeated"] and "decoded" not in oldest and "lr" in oldest
    finally:
        server.close()
