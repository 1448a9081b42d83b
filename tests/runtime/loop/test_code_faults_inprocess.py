"""The user's code failing on the workers (issue 29), through the in-process transport (no
Ray): a dataset whose ``__len__`` lies, a loss_fn returning detached losses, NaN in one data
item, a loss that is NaN at the initial parameters. Each stops the run at its first result with
one line naming the function (or the items) to fix, instead of retrying every worker until
``cluster.round_timeout_s`` (600 s here: a RunFailed would mean it waited)."""

import dataclasses

import pytest
import torch
from hostile_models import Indexed, mse
from runtime_helpers import config
from torch import nn

from gcode.runtime.run import execute
from gcode.runtime.transport.inprocess import Script
from gcode.train import Workload, WorkloadError

GC_FR = {"name": "gc", "s": 1, "gc_code": "fr"}


class Lying(Indexed):
    """Claims 480 items; has 400."""

    def __getitem__(self, i):
        if i >= 400:
            raise IndexError(f"index {i} is out of range")
        return super().__getitem__(i)


class OneNaN(Indexed):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return (x * float("nan"), y) if i == 7 else (x, y)


def detached(model, batch):
    return mse(model, batch).detach()


def nan_loss(model, batch):
    return mse(model, batch) * float("nan")


def linear():
    return nn.Linear(4, 2)


def sgd(params):
    return torch.optim.SGD(params, lr=0.05)


WORKLOAD = Workload(linear, mse, Indexed, sgd, name="linear")


def run(scheme, **fields):
    cfg = config(scheme=dict(scheme, jobs=4), train={"batch_size": 400, "check_decode": False},
                 cluster={"round_timeout_s": 600})
    return execute(cfg, dataclasses.replace(WORKLOAD, **fields), in_process=Script())[0]


@pytest.mark.parametrize("scheme", [{"name": "uncoded"}, GC_FR], ids=["uncoded", "gc-fr"])
def test_a_dataset_whose_len_lies(scheme):
    with pytest.raises(WorkloadError) as info:
        run(scheme, dataset_fn=Lying)
    msg = str(info.value)
    assert msg.startswith("dataset_fn's dataset raised IndexError: index ") and "\n" not in msg, msg
    assert ("and again on the coordinator computing job " in msg and "not a worker" in msg
            or "in the startup probe" in msg), msg  # a coded run's probe reads a batch first


@pytest.mark.parametrize("scheme", [{"name": "uncoded"}, GC_FR], ids=["uncoded", "gc-fr"])
def test_a_loss_fn_returning_detached_losses(scheme):
    with pytest.raises(WorkloadError, match=r"^loss_fn returned losses that do not depend on the "
                                            r"model's parameters \(computed under torch.no_grad\(\), "
                                            r"or detached\)"):
        run(scheme, loss_fn=detached)


def test_nan_in_one_data_item_names_the_item_not_the_learning_rate():
    with pytest.raises(WorkloadError) as info:
        run({"name": "uncoded"}, dataset_fn=OneNaN)
    msg = str(info.value)
    assert "batch holds NaN or inf in 1 item(s) of dataset_fn's dataset (indices 7)" in msg, msg
    assert "lr" not in msg and "\n" not in msg, msg


def test_a_loss_that_is_nan_from_the_start_names_loss_fn():
    with pytest.raises(WorkloadError, match=r"loss_fn returned a non-finite loss for job \d at "
                                            r"model \d's initial parameters, on finite data"):
        run({"name": "uncoded"}, loss_fn=nan_loss)


class Corrupt(Indexed):
    def __getitem__(self, i):
        raise ValueError(f"record {i} is corrupt")


class Unreadable(Indexed):
    def __getitem__(self, i):
        raise PermissionError("not readable on this node")


def only_workers_read():
    """The run's first two calls (the coordinator's length check, the in-process workers) get a
    corrupt dataset; the coordinator's own check reads another error: it cannot tell."""
    only_workers_read.calls += 1
    return Corrupt() if only_workers_read.calls <= 2 else Unreadable()


def test_every_worker_failing_alike_stops_the_round():
    only_workers_read.calls = 0
    with pytest.raises(WorkloadError, match=r"^every worker failed round 0 the same way: "
                                            r"dataset_fn's dataset raised ValueError: record \d+ "
                                            r"is corrupt"):
        run({"name": "uncoded"}, dataset_fn=only_workers_read)
    assert only_workers_read.calls == 3
