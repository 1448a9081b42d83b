"""gcode.train.step: the one update of a model from its decoded gradient (clip, optimizer,
scheduler), and the checks of scheduler_fn."""

import pytest
import torch

from gcode.train import FlatModel
from gcode.train.step import clip_factor, grad_norm, step
from gcode.train.workload import WorkloadError, build_optimizer, build_scheduler


def _model(seed=0):
    torch.manual_seed(seed)
    return FlatModel(torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(),
                                         torch.nn.Linear(4, 3)))


def _grad(d, seed=1):
    return torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 50


@pytest.mark.parametrize("max_norm", [None, 0.5, 1e9])
def test_step_matches_torch_clip_grad_norm(max_norm):
    """The update equals plain torch: gradient set, clip_grad_norm_, optimizer.step()."""
    ours, ref = _model(), _model()
    opt_a = torch.optim.AdamW(ours.module.parameters(), lr=0.1)
    opt_b = torch.optim.AdamW(ref.module.parameters(), lr=0.1)
    for k in range(3):
        g = _grad(ours.numel, seed=k)
        report = step(ours, opt_a, g, 0.25, max_grad_norm=max_norm)
        ref.set_gradient(g, 0.25)
        norm = torch.nn.utils.clip_grad_norm_(ref.module.parameters(),
                                              max_norm if max_norm else float("inf"))
        opt_b.step()
        assert report.grad_norm == pytest.approx(float(norm), rel=1e-6)
        assert report.clip_factor == (1.0 if max_norm in (None, 1e9) else
                                      pytest.approx(max_norm / (report.grad_norm + 1e-6)))
        torch.testing.assert_close(ours.params, ref.params, rtol=1e-6, atol=1e-7)


def test_clip_factor_is_torch_rule():
    assert clip_factor(10.0, None) == 1.0
    assert clip_factor(0.5, 1.0) == 1.0
    assert clip_factor(4.0, 1.0) == pytest.approx(1.0 / (4.0 + 1e-6))
    assert grad_norm(torch.tensor([3.0, 4.0], dtype=torch.float64), -2.0) == 10.0


def test_scheduler_steps_once_per_step():
    model = _model()
    opt = torch.optim.SGD(model.module.parameters(), lr=1.0)
    sched = build_scheduler(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5), opt)
    lrs = [step(model, opt, _grad(model.numel), 1.0, scheduler=sched).lr[0] for _ in range(3)]
    assert lrs == [1.0, 0.5, 0.25]
    assert opt.param_groups[0]["lr"] == 0.125


def test_scheduler_fn_checked():
    model = _model()
    opt = torch.optim.SGD(model.module.parameters(), lr=1.0)
    other = torch.optim.SGD(_model().module.parameters(), lr=1.0)
    with pytest.raises(WorkloadError, match="ReduceLROnPlateau"):
        build_scheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, opt)
    with pytest.raises(WorkloadError, match="must return a torch.optim.lr_scheduler.LRScheduler"):
        build_scheduler(lambda o: 3, opt)
    with pytest.raises(WorkloadError, match="another optimizer"):
        build_scheduler(lambda o: torch.optim.lr_scheduler.StepLR(other, 1), opt)
    assert build_scheduler(None, opt) is None


def test_optimizer_fn_returning_a_pair_points_at_scheduler_fn():
    def pair(params):
        opt = torch.optim.SGD(params, lr=0.1)
        return opt, torch.optim.lr_scheduler.StepLR(opt, 1)
    with pytest.raises(WorkloadError, match="scheduler_fn="):
        build_optimizer(pair, _model().module)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_skip_nonfinite_steps_nothing_on_a_nonfinite_gradient_and_changes_nothing_else(bad):
    """The collective plane's replicas step with ``skip_nonfinite``: a NaN or an infinity in the
    gradient leaves model and optimizer as they were (the norm says why); a finite gradient
    steps exactly as without it."""
    plain, skipping = _model(), _model()
    opts = [torch.optim.SGD(m.module.parameters(), lr=0.1, momentum=0.9) for m in (plain, skipping)]
    g = _grad(plain.numel)
    a = step(plain, opts[0], g, 0.5)
    b = step(skipping, opts[1], g, 0.5, skip_nonfinite=True)
    assert a == b and torch.equal(plain.params, skipping.params)
    before = skipping.params.clone()
    g[3] = bad
    report = step(skipping, opts[1], g, 0.5, skip_nonfinite=True)
    assert not torch.isfinite(torch.tensor(report.grad_norm))
    assert torch.equal(skipping.params, before)
