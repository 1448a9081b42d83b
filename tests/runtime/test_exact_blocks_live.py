"""The canonical-sum mode live (``RunConfig(exact_blocks=K)``), real Ray workers: every scheme and
every worker count computes the same per-block gradients and sums them in fp64, so runs with
AdamW, clipping and a schedule end with *identical* parameters, bit for bit: uncoded on 4 and on
2 workers, GC-FR and M-SGC under injected stragglers, on the star and on the collective plane,
in fp32 and in bf16. A cyclic code (coefficients other than 1) decodes within fp64 rounding of
the same sum, which the one rounding to fp32 nearly always absorbs."""

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import gcode

pytestmark = pytest.mark.ray

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/

BURSTY = gcode.InjectConfig(model="bursty", params={"B": 1, "W": 2, "lam": 1, "base": 0.01,
                                                     "slowdown": 10.0, "straggle_prob": 0.5})
GC_FR = {"scheme": "gc", "s": 1, "gc_code": "fr"}
MSGC = {"scheme": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"}


class Patterns(Dataset):
    """1x8x8 images made from their index: class k is a stripe pattern of frequency k, plus noise."""

    def __len__(self):
        return 512

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(int(i))
        label = int(torch.randint(0, 4, (), generator=g))
        grid = torch.linspace(0, 3.14159 * (label + 1), 8)
        return torch.sin(grid[None, :, None] + grid[None, None, :]) + torch.randn(1, 8, 8, generator=g), label


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 64, 4))


def per_sample_loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y, reduction="none")


def adamw(params):
    return torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05)


def cosine(optimizer):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)


def fit(pool, coding, workers=4, plane="star", precision="fp32", stragglers=True):
    return gcode.fit(small_cnn, per_sample_loss, Patterns, adamw, scheduler_fn=cosine,
                     coding=gcode.CodingConfig(**coding),
                     scaling=gcode.ScalingConfig(workers=workers, round_timeout_s=60, data_plane=plane),
                     run=gcode.RunConfig(jobs=8, batch_size=48, models=2, seed=2, exact_blocks=6,
                                         max_grad_norm=0.5, precision=precision,
                                         inject=BURSTY if stragglers else None),
                     pool=pool, progress=False)


def flat(result):
    return [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in result.models]


def assert_identical(result, reference):
    for got, want in zip(flat(result), flat(reference), strict=True):
        assert torch.equal(got, want), float((got - want).abs().max())


@pytest.fixture(scope="module")
def uncoded(ray_pool):
    res = fit(ray_pool, {"scheme": "uncoded"}, stragglers=False)
    assert res.metrics["message_dtype"] == "float64" and res.metrics["exact_blocks"] == 6
    assert res.metrics["steps_per_model"] == 4
    return res


def test_uncoded_on_two_workers_is_bitwise_uncoded_on_four(ray_pool, uncoded):
    assert_identical(fit(ray_pool, {"scheme": "uncoded"}, workers=2, stragglers=False), uncoded)


@pytest.mark.parametrize("coding", [GC_FR, MSGC], ids=["gc-fr", "msgc"])
def test_coded_runs_with_stragglers_are_bitwise_uncoded(ray_pool, uncoded, coding):
    res = fit(ray_pool, coding)
    assert res.metrics["stragglers"] > 0
    assert_identical(res, uncoded)


@pytest.mark.parametrize("coding", [{"scheme": "uncoded"}, GC_FR], ids=["uncoded", "gc-fr"])
def test_the_collective_plane_is_bitwise_the_star(ray_pool, uncoded, coding):
    res = fit(ray_pool, coding, plane="collective", stragglers=coding is GC_FR)
    assert res.metrics["data_plane"] == "collective"
    assert_identical(res, uncoded)


def test_bf16_coded_run_is_bitwise_its_uncoded_run(ray_pool):
    """Autocast per block is canonical per block: bf16 runs agree as fp32 runs do."""
    plain = fit(ray_pool, {"scheme": "uncoded"}, workers=2, precision="bf16", stragglers=False)
    coded = fit(ray_pool, MSGC, precision="bf16")
    assert coded.metrics["stragglers"] > 0
    assert_identical(coded, plain)


def test_a_cyclic_code_ends_within_fp64_rounding_of_uncoded(ray_pool, uncoded):
    res = fit(ray_pool, {"scheme": "gc", "s": 1, "gc_code": "cyclic"})
    assert res.metrics["stragglers"] > 0
    for got, want in zip(flat(res), flat(uncoded)):
        assert float((got - want).double().norm() / want.double().norm()) <= 1e-6
