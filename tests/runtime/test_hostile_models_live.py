"""Wrong models, live (issue 29), with real Ray and at most 4 workers:

| condition                                           | outcome                                 |
|-----------------------------------------------------|-----------------------------------------|
| a model with buffers (torch- or numpy-random) and   | uncoded on 1 worker = plain torch on    |
| a frozen bias under SGD(momentum, weight_decay)     | the same batches; GC and M-SGC = the    |
|                                                     | uncoded run within 1e-6; the bias never |
|                                                     | moves; resumed = uninterrupted          |
| a forward pass that changes a buffer                | WorkloadError naming the buffer, at     |
|                                                     | once (not after round_timeout_s)        |
| optimizer_fn over another module's parameters,      | WorkloadError naming optimizer_fn or    |
| model_fn on the meta device, a model_fn that builds | model_fn, before or at the first step   |
| another model on the workers, an optimizer step     | (not after round_timeout_s)             |
| that overflows (Adam at lr = 3e38)                  |                                         |
| one worker process returning NaN losses under GC-FR | tolerated: that worker is a straggler,  |
| (s = 1, 2 workers)                                  | the models equal the fault-free run's   |
| a parameter the loss never reaches, SGD with weight | it never moves, on the star and on the  |
| decay, GC-FR under stragglers                       | collective plane (no ``.grad``)         |
"""

import contextlib
import os
import sys
import tempfile
import time

import hostile_models as hm
import pytest
import torch
from hostile_models import Counting, Projected, Unseeded, Unused
from torch import nn

import gcode
from gcode.train import WorkloadError

ray = pytest.importorskip("ray")
for module in (sys.modules[__name__], hm):  # workers cannot import tests/
    ray.cloudpickle.register_pickle_by_value(module)

pytestmark = pytest.mark.ray

BURSTY = gcode.InjectConfig(model="bursty", params={"B": 1, "W": 2, "lam": 1, "base": 0.01,
                                                     "slowdown": 5.0, "straggle_prob": 0.5})
DRIVER_PID = os.getpid()


def _fit(pool, coding, workers=4, model_fn=Projected, optimizer_fn=hm.sgd, plane="star", **run):
    run = {"jobs": hm.JOBS, "batch_size": hm.BATCH, "seed": hm.SEED, "models": hm.MODELS, **run}
    return gcode.fit(model_fn, hm.mse, hm.Indexed, optimizer_fn,
                     coding=gcode.CodingConfig(**coding),
                     scaling=gcode.ScalingConfig(workers=workers, round_timeout_s=60,
                                                 data_plane=plane),
                     run=gcode.RunConfig(**run), pool=pool, progress=False)


@pytest.fixture(scope="module")
def uncoded(ray_pool):
    return _fit(ray_pool, {"scheme": "uncoded"}, workers=1)


def test_a_model_with_buffers_trains_as_plain_torch(ray_pool):
    res = _fit(ray_pool, {"scheme": "uncoded"}, workers=1, model_fn=Unseeded)
    models = res.models
    assert res.metrics["decoded_jobs"] == hm.JOBS
    assert not torch.equal(models[0].proj, models[1].proj)  # model m's own buffers came back
    assert hm.rel_diff(models, hm.plain_torch(models)) < 1e-6
    for model in models:  # SGD with weight decay and momentum never touched the frozen bias
        assert torch.equal(model.lin.bias, torch.ones(2))


@pytest.mark.parametrize("coding", [{"scheme": "gc", "s": 1, "gc_code": "fr"},
                                    {"scheme": "msgc", "B": 1, "W": 2, "lam": 1}],
                         ids=["gc-fr", "msgc"])
def test_coded_runs_of_a_model_with_buffers_equal_the_uncoded_run(ray_pool, uncoded, coding):
    res = _fit(ray_pool, coding, inject=BURSTY, models=hm.MODELS if coding["scheme"] == "gc" else 3)
    ref = uncoded if coding["scheme"] == "gc" else _fit(ray_pool, {"scheme": "uncoded"},
                                                         workers=1, models=3)
    assert res.metrics["decoded_jobs"] == hm.JOBS
    assert hm.rel_diff(res.models, ref.models) < 1e-6
    assert all(torch.equal(m.lin.bias, torch.ones(2)) for m in res.models)


@pytest.mark.parametrize("plane", ["star", "collective"])
def test_an_unreached_parameter_gets_no_gradient_on_either_plane(ray_pool, plane):
    """SGD with weight decay moves a parameter whose ``.grad`` is zero, not one whose ``.grad``
    is None: on both planes (the collective plane's replicas step themselves) ``spare`` stays
    at model_fn's values, and the planes train the same models."""
    from gcode.runtime.data import model_seed
    from gcode.train import build_model
    res = _fit(ray_pool, {"scheme": "gc", "s": 1, "gc_code": "fr"}, model_fn=Unused,
               inject=BURSTY, plane=plane)
    assert res.metrics["decoded_jobs"] == hm.JOBS
    for m, model in enumerate(res.models):
        initial = build_model(Unused, model_seed(hm.SEED, m))
        assert torch.equal(model.spare.weight, initial.spare.weight)
        assert torch.equal(model.spare.bias, initial.spare.bias)
        assert not torch.equal(model.head.weight, initial.head.weight)
    if plane == "collective":
        star = _fit(ray_pool, {"scheme": "gc", "s": 1, "gc_code": "fr"}, model_fn=Unused)
        assert hm.rel_diff(res.models, star.models) < 1e-6


def test_a_resumed_run_keeps_the_checkpoints_buffers(ray_pool, tmp_path):
    """``shift`` is drawn again (unseeded numpy) when the resumed run builds its models: the
    checkpoint's buffers, not the new draw, reach the workers, and the resumed run ends where
    the uninterrupted one did."""
    ck = tmp_path / "ck"
    whole = _fit(ray_pool, {"scheme": "uncoded"}, workers=1, model_fn=Unseeded,
                 checkpoint=gcode.CheckpointConfig(dir=str(ck), every=2, keep=10))
    resumed = _fit(ray_pool, {"scheme": "uncoded"}, workers=1, model_fn=Unseeded,
                   checkpoint=gcode.CheckpointConfig(resume=str(ck / "round-00000002")))
    assert resumed.metrics["decoded_jobs"] == hm.JOBS
    for a, b in zip(resumed.models, whole.models):
        assert torch.equal(a.shift, b.shift)
    assert hm.rel_diff(resumed.models, whole.models) < 1e-6


def test_a_forward_pass_that_changes_a_buffer_stops_the_run_at_once(ray_pool):
    start = time.monotonic()
    with pytest.raises(WorkloadError, match=r"^model_fn: the forward pass changed buffer 'calls'"):
        _fit(ray_pool, {"scheme": "gc", "s": 1}, model_fn=Counting)
    assert time.monotonic() - start < 55  # before round_timeout_s (60): not a timeout


@pytest.mark.parametrize("kwargs,message", [
    ({"optimizer_fn": lambda params: torch.optim.SGD(nn.Linear(4, 2).parameters(), lr=0.1)},
     r"^optimizer_fn must build its optimizer over the parameters it is given"),
    ({"model_fn": lambda: nn.Linear(4, 2, device="meta")}, r"^model_fn: 'weight' is on the meta device"),
    ({"model_fn": lambda: nn.Linear(4 if os.getpid() == DRIVER_PID else 5, 2)},
     r"^model_fn builds a model of 12 parameters on this worker and one of 10 on the coordinator"),
    ({"optimizer_fn": lambda params: torch.optim.Adam(params, lr=3e38)},
     (r"^optimizer_fn: the optimizer's step failed for model 0 at job 0: RuntimeError: value "
      r"cannot be converted to type float without overflow \(is the learning rate optimizer_fn sets")),
], ids=["optimizer over another module", "meta device", "another model on the workers",
        "overflowing step"])
def test_unusable_workloads_name_the_function(ray_pool, kwargs, message):
    start = time.monotonic()
    with pytest.raises(WorkloadError, match=message):
        _fit(ray_pool, {"scheme": "uncoded"}, **kwargs)
    assert time.monotonic() - start < 55  # before round_timeout_s (60): not a timeout


#: the first worker process to claim this file returns NaN losses (a faulty worker)
FAULTY_CLAIM = f"{tempfile.gettempdir()}/gcode-faulty-worker-{os.getpid()}"


def nan_on_one_worker(model, batch):
    losses = hm.mse(model, batch)
    if os.getpid() == DRIVER_PID:  # the coordinator computes truly
        return losses
    with contextlib.suppress(FileExistsError), open(FAULTY_CLAIM, "x") as claim:
        claim.write(str(os.getpid()))
    with open(FAULTY_CLAIM) as claim:
        return losses * float("nan") if claim.read() == str(os.getpid()) else losses


def test_one_worker_returning_nan_losses_is_a_straggler(ray_pool, uncoded):
    """GC-FR with s = 1 on 2 workers, one of whose processes returns NaN losses: the
    coordinator computes the job itself, finds it finite, and treats that worker as faulty; the
    run ends with the fault-free run's models."""
    try:
        res = gcode.fit(Projected, nan_on_one_worker, hm.Indexed, hm.sgd,
                        coding=gcode.CodingConfig(scheme="gc", s=1, gc_code="fr"),
                        scaling=gcode.ScalingConfig(workers=2, round_timeout_s=60),
                        run=gcode.RunConfig(jobs=hm.JOBS, batch_size=hm.BATCH, seed=hm.SEED,
                                            models=hm.MODELS), pool=ray_pool, progress=False)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(FAULTY_CLAIM)
    failures = res.metrics["failures"]
    assert failures and all("non-finite loss" in f["reason"] for f in failures), failures
    assert res.metrics["decoded_jobs"] == hm.JOBS
    assert hm.rel_diff(res.models, uncoded.models) < 1e-6
