"""ZeRO-1's shards (gcode/runtime/collective/sharding.py) without Ray: the layout of three ranks
tiles every parameter, and on a one-rank gloo group in this process the sharded step (two param
groups, an LR scheduler, clipping, a frozen and an unreached parameter) equals the whole
optimizer's step bit for bit, its gathered state is the whole optimizer's, and a whole state cut
back into shards continues exactly. The Ray tests (test_collective_live.py) run it on 4 ranks."""

import itertools

import pytest
import torch

from gcode.runtime.collective import CollectiveConfig, CollectivePlane, Rendezvous
from gcode.runtime.collective.group import free_port
from gcode.runtime.collective.sharding import ELEMENTWISE, ShardedReplica, ShardLayout, check_shardable
from gcode.train import FlatModel, WorkloadError
from gcode.train.step import step as whole_step


def build():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    module[2].bias.requires_grad_(False)  # frozen: never a .grad
    model = FlatModel(module)
    p = model.parameters
    optimizer = torch.optim.Adam([{"params": [p[2], p[0]], "lr": 0.05, "weight_decay": 0.1},
                                  {"params": [p[1]], "lr": 0.01}], betas=(0.8, 0.9))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler  # p[3] (the frozen bias) is in no group


def test_three_ranks_layout_tiles_every_value_once():
    model, optimizer, _ = build()
    layouts = [ShardLayout(model, optimizer, r, 3) for r in range(3)]
    segments = layouts[0].segments
    assert all(lay.segments == segments for lay in layouts)
    assert sorted(f + j for _, f, k in segments for j in range(k)) == list(range(model.numel))
    flat = torch.arange(model.numel, dtype=torch.float64)
    assert torch.equal(layouts[1].model_order(layouts[2].scatter_order(flat), torch.zeros(model.numel)), flat)
    for i, p in enumerate(model.parameters[:3]):  # each grouped parameter, cut over the ranks
        spans = sorted((q.lo, q.hi) for lay in layouts for q in lay.pieces if q.param == i)
        assert spans[0][0] == 0 and spans[-1][1] == p.numel()
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert not any(q.param == 3 for lay in layouts for q in lay.pieces)


def test_only_element_wise_optimizers_shard():
    check_shardable(torch.optim.AdamW([torch.zeros(2, requires_grad=True)]))
    with pytest.raises(WorkloadError, match="torch.optim.lbfgs.LBFGS does not allow .* use zero=0, "
                                            "or one of SGD, Adam, AdamW"):
        check_shardable(torch.optim.LBFGS([torch.zeros(2, requires_grad=True)]))
    model, optimizer, _ = build()
    check_shardable(optimizer, model)
    with pytest.raises(WorkloadError, match="holds a tensor that is not one of the model's parameters"):
        check_shardable(torch.optim.SGD([torch.zeros(2, requires_grad=True)]), model)


def test_one_rank_sharded_step_equals_the_whole_step_and_resumes_from_its_state():
    plane = CollectivePlane(5, "cpu", CollectiveConfig(zero=1))
    try:
        plane.join_group(Rendezvous("127.0.0.1", free_port("127.0.0.1"), 1, 0, "gloo", 30.0), 0).result(60)
        plane.submit("zero=1 steps", _steps).result(timeout=120)
    finally:
        plane.close()


def _steps():
    whole, whole_opt, whole_sched = build()
    model, optimizer, scheduler = build()
    sharded = ShardedReplica(model, optimizer, 0, 1)
    g = torch.Generator().manual_seed(1)
    for k in range(6):
        grad = torch.randn(model.numel, generator=g, dtype=torch.float64)
        if k == 2:  # a non-finite sum steps nothing, scheduler included
            grad[4] = float("nan")
        unreached = [0] if k == 1 else []  # step 1's samples never reach the first weight
        a = whole_step(whole, whole_opt, grad, 0.5, scheduler=whole_sched, max_grad_norm=2.0,
                       unreached=unreached, skip_nonfinite=True)
        b, total = sharded.step(grad, 0.5, scheduler=scheduler, max_grad_norm=2.0,
                                unreached=unreached, gather_sum=True)
        assert torch.equal(total.nan_to_num(), grad.nan_to_num())  # check_decode's sum
        assert (a.clip_factor, a.lr) == (b.clip_factor, b.lr) and repr(a.grad_norm) == repr(b.grad_norm)
        assert torch.equal(model.params, whole.params)
        if k == 3:  # cut the whole state into a fresh replica's shards: it goes on exactly
            state = sharded.full_state()
            want = whole_opt.state_dict()["state"]
            assert sorted(state) == sorted(want) == [0, 1, 2]
            assert all(torch.equal(state[i][key], want[i][key]) for i in want for key in want[i])
            model, optimizer, scheduler = build()
            model.load(whole.params)
            optimizer.load_state_dict(whole_opt.state_dict())
            scheduler.load_state_dict(whole_sched.state_dict())
            sharded = ShardedReplica(model, optimizer, 0, 1)
            assert not optimizer.state  # the state lives in the shards only


def test_zero1_needs_the_collective_plane():
    from gcode.bench.versus import VersusConfig
    from gcode.config import ConfigError, from_dict
    with pytest.raises(ConfigError, match="cluster.zero: 1 shards .* needs cluster.data_plane = collective"):
        from_dict({"cluster": {"zero": 1}})
    assert from_dict({"cluster": {"zero": 1, "data_plane": "collective"}}).cluster.zero == 1
    with pytest.raises(ValueError, match="--zero must be 0, or 1 with --data-plane collective"):
        VersusConfig(zero=1)


@pytest.mark.parametrize("cls", [c.__name__ for c in ELEMENTWISE])
def test_element_wise_optimizers_give_a_value_the_same_bits_wherever_it_is_cut(cls):
    """What zero=1's bit-exactness rests on: stepping parameters cut into pieces at arbitrary
    offsets (foreach and single-tensor) equals stepping them whole, bit for bit."""
    optimizer = getattr(torch.optim, cls)
    hyper = {"lr": 0.01, **({"momentum": 0.9, "weight_decay": 0.01} if cls == "SGD" else {})}
    shapes, cuts = [(37, 13), (13,), (1,), (300,)], [1, 2, 3, 481, 482, 600]
    sizes = [torch.Size(s).numel() for s in shapes]
    for foreach in (False, True):
        torch.manual_seed(0)
        whole = [torch.randn(s) for s in shapes]
        flat = torch.cat([p.reshape(-1) for p in whole])
        bounds, offsets = [0, *cuts, flat.numel()], [0, *itertools.accumulate(sizes)]
        spans = [(max(lo, a), min(hi, b)) for lo, hi in itertools.pairwise(bounds)
                 for a, b in itertools.pairwise(offsets) if max(lo, a) < min(hi, b)]
        pieces = [flat[lo:hi].clone() for lo, hi in spans]
        a, b = optimizer(whole, foreach=foreach, **hyper), optimizer(pieces, foreach=foreach, **hyper)
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            grad = torch.randn(flat.numel(), generator=g)
            for p, (lo, hi) in zip(whole, itertools.pairwise(offsets)):
                p.grad = grad[lo:hi].view_as(p).clone()
            for p, (lo, hi) in zip(pieces, spans):
                p.grad = grad[lo:hi].clone()
            a.step()
            b.step()
        assert torch.equal(torch.cat([p.reshape(-1) for p in whole]), torch.cat(pieces)), (cls, foreach)
