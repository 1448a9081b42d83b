"""A parameter the loss never reaches (issue 29), through the in-process transport (no Ray):
after each step it has no ``.grad`` in the returned model, as in plain torch, so SGD's weight
decay and momentum never move it; the reached ones train exactly as plain torch trains them, and
coded runs under stragglers end with the uncoded run's models (1e-6). A worker finds the
unreached parameters on both of its gradient paths: fp32 messages (one backward per task) and
fp64 (one per chunk)."""

import hostile_models as hm
import pytest
import torch
from hostile_models import Unused
from runtime_helpers import config

from gcode.runtime.data import job_indices, model_seed
from gcode.runtime.run import execute
from gcode.runtime.transport.inprocess import Script
from gcode.train import Workload, build_model

STRAGGLERS = Script(delays={(r, r % 4): 0.04 for r in range(1, 40, 2)})


WORKLOAD = Workload(Unused, hm.mse, hm.Indexed, hm.sgd, name="unused")


def run(scheme, script=None, workers=4):
    cfg = config(scheme=dict(scheme, jobs=hm.JOBS), cluster={"workers": workers},
                 train={"batch_size": hm.BATCH, "seed": hm.SEED, "models": hm.MODELS,
                        "check_decode": False})
    return execute(cfg, WORKLOAD, in_process=script or Script())[1]


def plain_torch():
    data = hm.Indexed()
    out = []
    for m in range(hm.MODELS):
        model = build_model(Unused, model_seed(hm.SEED, m))
        opt = hm.sgd(model.parameters())
        for t in range(m, hm.JOBS, hm.MODELS):
            items = [data[int(i)] for i in job_indices(hm.SEED, t, hm.BATCH, len(data))]
            x, y = torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
            opt.zero_grad()
            (hm.mse(model, (x, y)).sum() / hm.BATCH).backward()
            opt.step()
        out.append(model)
    return out


@pytest.fixture(scope="module")
def reference():
    return plain_torch()


def _check(models, reference):
    for model, ref in zip(models, reference, strict=True):
        assert model.spare.weight.grad is None and model.spare.bias.grad is None
        assert ref.spare.weight.grad is None
        assert model.head.weight.grad is not None
        assert torch.equal(model.spare.weight, ref.spare.weight)  # never moved
        initial = build_model(Unused, 0)  # spare's values are model_fn's, seeded per model
        assert not torch.equal(model.head.weight, initial.head.weight)
    assert hm.rel_diff(models, reference) < 1e-6


def test_uncoded_on_one_worker_is_plain_torch(reference):
    _check(run({"name": "uncoded"}, workers=1), reference)


@pytest.mark.parametrize("scheme", [{"name": "gc", "s": 1, "gc_code": "fr"},
                                    {"name": "gc", "s": 1, "gc_code": "cyclic"}],
                         ids=["gc-fr", "gc-cyclic"])
def test_coded_runs_under_stragglers(reference, scheme):
    _check(run(scheme, STRAGGLERS), reference)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_task_reports_what_its_backward_did_not_reach(dtype):
    from gcode.train.compute import TaskComputer
    computer = TaskComputer(WORKLOAD)
    computer.load(0, computer.model.snapshot())
    out = torch.empty(computer.num_params, dtype=dtype)
    computer.coded_gradient([list(range(8)), list(range(8, 20))], [1.0, 0.5], out)
    assert computer.unreached == [2, 3]  # spare.weight, spare.bias
    assert not out[-15:].any() and out[:10].any()
    computer.coded_gradient([[]], [1.0], out)
    assert computer.unreached == [0, 1, 2, 3] and not out.any()
