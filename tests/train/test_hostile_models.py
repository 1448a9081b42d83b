"""The hostile-input catalogue, part 3 (issue 29): wrong models that used to train silently,
checked here without Ray (the live runs are tests/runtime/test_hostile_models_live.py).

| case                                              | outcome                                  |
|---------------------------------------------------|------------------------------------------|
| a frozen parameter under weight decay or momentum | never moves, as in plain torch           |
| optimizer_fn over another module's parameters,    | WorkloadError naming optimizer_fn        |
| over a copy, or over none of the trainable ones   |                                          |
| model_fn on the meta device, a lazy module, all   | WorkloadError naming model_fn            |
| parameters frozen                                 |                                          |
| buffers: job t computes with model (t mod M)'s    | the coordinator's buffers, loaded once   |
| buffers, whatever the worker built                | per model switch                         |
| a forward pass that changes a buffer (a counter,  | WorkloadError naming model_fn and the    |
| a reassigned buffer)                              | buffer                                   |
| an optimizer step that overflows float32          | WorkloadError naming optimizer_fn and    |
|                                                   | train.lr (presets) or its own lr         |
"""

import copy
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hostile_models import (
    BATCH,
    JOBS,
    MODELS,
    SEED,
    Counting,
    Indexed,
    Projected,
    Unseeded,
    mse,
    plain_torch,
    rel_diff,
    sgd,
)
from torch import nn
from torch.utils.data import TensorDataset

from gcode.train import FlatModel, TaskComputer, Workload, WorkloadError, build_model
from gcode.train.optim import make_optimizer, step
from gcode.train.workload import build_optimizer, model_buffers


def frozen_bias():
    m = nn.Linear(4, 2)
    nn.init.ones_(m.bias)
    m.bias.requires_grad_(False)
    return m


@pytest.mark.parametrize("hyper", [{"weight_decay": 0.5}, {"momentum": 0.9, "weight_decay": 0.1}],
                         ids=["weight decay", "momentum"])
def test_a_frozen_parameter_never_moves(hyper):
    """Three steps of SGD through FlatModel (as the coordinator steps a decoded gradient) and
    of plain torch on the same gradients: the same weights, the frozen bias still 1.0."""
    flat = FlatModel(build_model(frozen_bias, 0))
    plain = build_model(frozen_bias, 0)
    opts = [build_optimizer(lambda p: torch.optim.SGD(p, lr=0.1, **hyper), flat.module),
            torch.optim.SGD(plain.parameters(), lr=0.1, **hyper)]
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        plain.zero_grad()
        plain(x).square().sum().backward()
        grad = torch.cat([plain.weight.grad.reshape(-1), torch.zeros(2)])  # as decoded: 0 frozen
        flat.set_gradient(grad.double(), 1.0)
        for opt in opts:
            opt.step()
    assert torch.equal(flat.module.bias, torch.ones(2)) and flat.module.bias.grad is None
    assert torch.equal(plain.bias, torch.ones(2))
    assert torch.allclose(flat.module.weight, plain.weight, rtol=1e-6, atol=0)


@pytest.mark.parametrize("make,message", [
    (lambda model: torch.optim.SGD(nn.Linear(4, 2).parameters(), lr=0.1),
     "2 of its 2 tensors are not the model's parameters"),
    (lambda model: torch.optim.SGD(copy.deepcopy(model).parameters(), lr=0.1),
     "2 of its 2 tensors are not the model's parameters"),
    (lambda model: torch.optim.SGD([model.bias], lr=0.1),
     "it holds none of the model's trainable parameters"),
], ids=["another module", "a copy", "only the frozen bias"])
def test_an_optimizer_over_the_wrong_parameters_is_refused(make, message):
    model = build_model(frozen_bias, 0)
    with pytest.raises(WorkloadError, match=r"^optimizer_fn must build its optimizer over the "
                                            r"parameters it is given") as info:
        build_optimizer(lambda params: make(model), model)
    assert message in str(info.value)
    # a subset of the model's own parameters is the user's choice, as in torch
    build_optimizer(lambda params: torch.optim.SGD([model.weight], lr=0.1), model)


def _all_frozen():
    m = nn.Linear(2, 2)
    m.requires_grad_(False)
    return m


@pytest.mark.parametrize("model_fn,message", [
    (lambda: nn.Linear(4, 2, device="meta"), "model_fn: 'weight' is on the meta device"),
    (lambda: nn.Sequential(nn.LazyLinear(2)), "model_fn: parameter '0.weight' is uninitialized"),
    (_all_frozen, "model_fn: every parameter has requires_grad=False"),
    (lambda: nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)),
     "model_fn: BatchNorm layer '1' keeps running statistics"),
], ids=["meta device", "lazy module", "all frozen", "BatchNorm running statistics"])
def test_unusable_models_name_model_fn(model_fn, message):
    with pytest.raises(WorkloadError) as info:
        build_model(model_fn, 0)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


# ---- buffers ----------------------------------------------------------------------------------
class Reassigning(Projected):
    def forward(self, x):
        self.proj = self.proj * 1.0001  # a new tensor under the buffer's name
        return super().forward(x)


def _workload(model_fn):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 4, generator=g), torch.randn(32, 2, generator=g))
    loss = lambda model, batch: F.mse_loss(model(batch[0]), batch[1], reduction="none").mean(1)
    return Workload(model_fn, loss, lambda: data, lambda p: torch.optim.SGD(p, lr=0.1))


def test_job_t_computes_with_model_t_mod_m_buffers():
    """Two coordinator models with different buffers; a worker that built its own third set.
    Job t's gradient equals the gradient of model (t mod 2) itself, at the same parameters."""
    coordinator = [build_model(Unseeded, seed) for seed in (11, 12)]
    shipped = model_buffers(coordinator)
    assert len(shipped) == 2 and not torch.equal(shipped[0]["proj"], shipped[1]["proj"])
    computer = TaskComputer(_workload(Unseeded), "cpu", shipped)
    params = torch.nn.utils.parameters_to_vector(coordinator[0].parameters()).detach()
    rows = [np.arange(16)]
    for job in (0, 1, 2, 3):
        out = torch.empty(len(params))
        computer.load(job, params.numpy())
        computer.coded_gradient(rows, [1.0], out)
        ref = coordinator[job % 2]
        torch.nn.utils.vector_to_parameters(params.clone(), ref.parameters())
        ref.zero_grad()
        x, y = computer.host_batch(rows[0])
        F.mse_loss(ref(x), y, reduction="none").mean(1).sum().backward()
        expected = torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.reshape(-1)
                              for p in ref.parameters()])  # the frozen bias: zero
        assert torch.allclose(out, expected, rtol=1e-6, atol=1e-7), job
    # models whose buffers are all equal share one set; models without buffers send none
    causal = lambda: Masked(nn.Transformer.generate_square_subsequent_mask(5))
    assert len(model_buffers([build_model(causal, seed) for seed in (1, 2, 3)])) == 1
    assert model_buffers([build_model(frozen_bias, seed) for seed in (1, 2)]) == ()


class Masked(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.lin = nn.Linear(5, 5)
        self.register_buffer("mask", mask)  # holds -inf: compared as values, not as finite


def _in_process(coding, workers, model_fn=Unseeded, models=MODELS):
    """A run of the coordinator's loop with in-process workers (no Ray; a straggler in every
    odd round), returning (metrics, the trained models)."""
    import gcode
    from gcode.api import to_train_config
    from gcode.runtime.run import execute
    from gcode.runtime.transport.inprocess import Script
    cfg = to_train_config(gcode.CodingConfig(**coding), gcode.ScalingConfig(workers=workers),
                                gcode.RunConfig(jobs=JOBS, batch_size=BATCH, seed=SEED, models=models))
    workload = Workload(model_fn, mse, Indexed, sgd)
    stragglers = Script(delays={(r, r % workers): 0.04 for r in range(1, 20, 2)})
    return execute(cfg, workload, in_process=stragglers)


def test_a_model_with_buffers_trains_as_plain_torch_in_process():
    """The buffers acceptance without Ray (the live one: tests/runtime/test_hostile_models_live.py):
    uncoded on one worker = plain torch; GC-FR and M-SGC on 4 workers with stragglers = uncoded,
    within 1e-6; the frozen bias never moves. ``shift`` is unseeded: each run draws another, so
    each coded run is compared with plain torch on its own buffers."""
    metrics, models = _in_process({"scheme": "uncoded"}, 1)
    assert metrics["decoded_jobs"] == JOBS and not torch.equal(models[0].proj, models[1].proj)
    assert rel_diff(models, plain_torch(models)) < 1e-6
    for coding, m in (({"scheme": "gc", "s": 1, "gc_code": "fr"}, MODELS),
                      ({"scheme": "msgc", "B": 1, "W": 2, "lam": 1}, 3)):
        metrics, coded = _in_process(coding, 4, models=m)
        assert metrics["decoded_jobs"] == JOBS and metrics["stragglers"] > 0
        assert rel_diff(coded, plain_torch(coded)) < 1e-6
        assert all(torch.equal(model.lin.bias, torch.ones(2)) for model in coded)


@pytest.mark.parametrize("model_fn,name", [(Counting, "calls"), (Reassigning, "proj")],
                         ids=["a counter", "a reassigned buffer"])
def test_a_forward_pass_that_changes_a_buffer_is_refused(model_fn, name):
    shipped = model_buffers([build_model(model_fn, 3)])
    computer = TaskComputer(_workload(model_fn), "cpu", shipped)
    computer.load(0, np.zeros(computer.num_params, dtype=np.float32))
    with pytest.raises(WorkloadError, match=rf"^model_fn: the forward pass changed buffer '{name}'"):
        computer.coded_gradient([np.arange(8)], [1.0], torch.empty(computer.num_params))


def test_a_worker_that_builds_another_model_is_refused():
    shipped = model_buffers([build_model(Counting, 3)])
    with pytest.raises(WorkloadError, match=r"^model_fn builds other buffers on this worker"):
        TaskComputer(_workload(Projected), "cpu", shipped)
    computer = TaskComputer(_workload(Projected), "cpu")
    with pytest.raises(WorkloadError, match=r"^model_fn builds a model of 10 parameters on this "
                                            r"worker and one of 12 on the coordinator"):
        computer.load(0, np.zeros(12, dtype=np.float32))


# ---- an optimizer step that fails ----------------------------------------------------------------
@pytest.mark.parametrize("preset", [True, False], ids=["gcode train", "gcode.fit"])
def test_an_overflowing_optimizer_step_names_its_setting(preset):
    """Adam at lr = 3e38: its step size lr / (1 - beta1) overflows float32 inside torch."""
    optimizer_fn = (partial(make_optimizer, "adam", lr=3e38) if preset
                    else lambda params: torch.optim.Adam(params, lr=3e38))
    model = FlatModel(build_model(frozen_bias, 0))
    opt = build_optimizer(optimizer_fn, model.module)
    model.set_gradient(torch.ones(model.numel, dtype=torch.float64), 1.0)
    with pytest.raises(WorkloadError) as info:
        step(opt, optimizer_fn, "model 0 at job 0")
    msg = str(info.value)
    assert msg.startswith("optimizer_fn: the optimizer's step failed for model 0 at job 0: "
                          "RuntimeError: value cannot be converted to type float without overflow")
    assert ("train.lr=3e+38" if preset else "the learning rate optimizer_fn sets") in msg
