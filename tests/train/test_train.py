import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gcode.train import (
    Dataset,
    FlatModel,
    TaskComputer,
    Workload,
    WorkloadError,
    load_dataset,
    make_model,
    make_model_factory,
    make_optimizer,
    model_names,
    num_params,
    register_model,
)
from gcode.train.presets import classification_loss


def flatten_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()

MODELS = ["logistic", "mlp", "cnn"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def digits200(digits):
    idx = np.random.default_rng(1).choice(len(digits), size=200, replace=False)
    return torch.from_numpy(digits.x[idx]), torch.from_numpy(digits.y[idx])


def _model(name, seed=0):
    return make_model(name, (1, 8, 8), 10, seed=seed)


def test_does_not_import_ray():
    code = "import sys, gcode.train; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("name", MODELS)
def test_init_is_deterministic_per_seed(name):
    a, b, c = _model(name, 3), _model(name, 3), _model(name, 4)
    assert np.array_equal(flatten_params(a), flatten_params(b))
    assert not np.array_equal(flatten_params(a), flatten_params(c))


def test_make_model_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _model("mlp", 9)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", MODELS)
def test_models_accept_flat_and_image_batches(name, digits):
    model = _model(name)
    flat = torch.from_numpy(digits.x[:5])
    assert model(flat).shape == (5, 10)
    assert torch.equal(model(flat), model(flat.reshape(5, 1, 8, 8)))


def test_mlp_hidden_and_int_in_features():
    model = make_model("mlp", 64, 10, seed=0, hidden=16)
    assert num_params(model) == 64 * 16 + 16 + 16 * 10 + 10
    assert num_params(make_model("logistic", 20, 3, seed=0)) == 20 * 3 + 3


def test_model_errors():
    with pytest.raises(ValueError, match="valid names: charlm, cnn, logistic, mlp, resnet18"):
        make_model("resnet", 64, 10, seed=0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        make_model("cnn", 64, 10, seed=0)
    with pytest.raises(ValueError, match="hidden"):
        make_model("mlp", 64, 10, seed=0, hidden=0)
    with pytest.raises(ValueError, match="width"):
        make_model("mlp", 64, 10, seed=0, width=3)
    with pytest.raises(ValueError, match="num_classes"):
        make_model("logistic", 64, 0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        make_model("logistic", 64, 10, seed=-1)


def test_register_model():
    def tiny(input_shape, num_classes, bias=True):
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), num_classes, bias=bias))

    register_model("test-tiny", tiny)
    assert "test-tiny" in model_names()
    assert num_params(make_model("test-tiny", 4, 2, seed=0, bias=False)) == 8
    with pytest.raises(ValueError, match="already registered"):
        register_model("test-tiny", tiny)
    register_model("test-tiny", tiny, overwrite=True)


# ---------------------------------------------------------------- datasets


def test_digits(digits):
    assert digits.x.shape == (1797, 64) and digits.x.dtype == np.float32
    assert digits.y.shape == (1797,) and digits.y.dtype == np.int64
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.x.min() == 0.0 and digits.x.max() == 1.0
    sub = load_dataset("digits", num_samples=100, seed=5)
    assert len(sub) == 100
    assert np.array_equal(sub.x, load_dataset("digits", num_samples=100, seed=5).x)


def test_synthetic_is_seeded_and_shaped():
    a = load_dataset("synthetic", num_samples=300, seed=2, num_features=7, num_classes=4)
    b = load_dataset("synthetic", num_samples=300, seed=2, num_features=7, num_classes=4)
    assert a.x.shape == (300, 7) and a.input_shape == (7,) and a.num_classes == 4
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert set(np.unique(a.y)) <= set(range(4))
    assert not np.array_equal(a.x, load_dataset("synthetic", num_samples=300, seed=3, num_features=7).x)


def test_load_dataset_errors():
    with pytest.raises(ValueError, match="valid names: digits, synthetic"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="num_samples"):
        load_dataset("digits", num_samples=5000)
    with pytest.raises(ValueError, match="no parameters"):
        load_dataset("digits", num_features=3)
    with pytest.raises(ValueError, match="num_features"):
        load_dataset("synthetic", num_features=0)
    with pytest.raises(ValueError, match="unknown parameters"):
        load_dataset("synthetic", colour="red")
    with pytest.raises(ValueError, match="seed"):
        load_dataset("synthetic", seed=-2)


def test_from_arrays():
    x = np.random.default_rng(0).random((6, 2, 3))
    ds = Dataset.from_arrays(x, np.array([0, 1, 2, 0, 1, 2]))
    assert ds.x.shape == (6, 6) and ds.x.dtype == np.float32
    assert ds.input_shape == (2, 3) and ds.num_classes == 3 and ds.y.dtype == np.int64


@pytest.mark.parametrize(
    "x, y, kwargs, match",
    [
        (np.zeros((3, 2)), np.array([0, 1]), {}, "same length"),
        (np.array([[0.0, np.nan], [1, 2]]), np.array([0, 1]), {}, "non-finite"),
        (np.array([[0.0, np.inf], [1, 2]]), np.array([0, 1]), {}, "non-finite"),
        (np.zeros((2, 2)), np.array([0, 3]), {"num_classes": 3}, r"labels must lie in \[0, 3\)"),
        (np.zeros((2, 2)), np.array([0, -1]), {}, "labels must lie"),
        (np.zeros((2, 2)), np.array([0.0, 1.0]), {}, "integer class labels"),
        (np.zeros(3), np.array([0, 1, 2]), {}, "shape"),
        (np.zeros((2, 4)), np.array([0, 1]), {"input_shape": (3,)}, "input_shape"),
        (np.zeros((0, 4)), np.zeros(0, dtype=np.int64), {}, "at least one sample"),
        (np.array([["a"], ["b"]]), np.array([0, 1]), {}, "numeric"),
    ],
)
def test_from_arrays_errors(x, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Dataset.from_arrays(x, y, **kwargs)


# ---------------------------------------------------------------- flat storage and coded gradients


@pytest.mark.parametrize("name", MODELS)
def test_flat_model_load_roundtrip_read_only(name):
    src, dst = _model(name, 1), FlatModel(_model(name, 2))
    flat = flatten_params(src)
    assert flat.dtype == np.float32 and flat.shape == (num_params(src),) == (dst.numel,)
    flat.setflags(write=False)  # as returned by ray.get
    dst.load(flat)
    assert np.array_equal(dst.snapshot(), flat)
    for p, q in zip(src.parameters(), dst.module.parameters()):
        assert torch.equal(p, q)
    writable = flat.copy()
    dst.load(writable)
    writable[:] = 7.0  # the model holds a copy, not a view
    assert np.array_equal(dst.snapshot(), flat)
    with pytest.raises(ValueError, match="expected"):
        dst.load(np.zeros(10, dtype=np.float32))


def _digits_workload(name, x, y, loss=classification_loss):
    from functools import partial

    from torch.utils.data import TensorDataset
    return Workload(make_model_factory(name, (1, 8, 8), 10), loss, partial(TensorDataset, x, y),
                    partial(make_optimizer, "sgd", lr=0.1))


def _sum_loss_grad_fp64(model, x, y):
    ref = copy.deepcopy(model).double()
    F.cross_entropy(ref(x.double()), y, reduction="sum").backward()
    return torch.cat([p.grad.reshape(-1) for p in ref.parameters()]).numpy()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_weighted_pass_equals_the_coded_sum_of_chunk_gradients(name, dtype, digits200):
    """Σ c_k ∇L_k from one backward pass of Σ w_i loss_i (fp32 messages), or per chunk in fp64."""
    x, y = digits200
    computer = TaskComputer(_digits_workload(name, x, y))
    computer.model.load(flatten_params(_model(name, 5)))
    ref = _model(name, 5)
    chunks = [np.arange(0, 50), np.arange(50, 120), np.arange(120, 200)]
    coefs = [0.5, -1.25, 2.0]
    expected = sum(c * _sum_loss_grad_fp64(ref, x[i], y[i]) for i, c in zip(chunks, coefs))
    out = torch.empty(computer.num_params, dtype=dtype)
    loss = computer.coded_gradient(chunks, coefs, out)
    assert np.linalg.norm(out.double().numpy() - expected) / np.linalg.norm(expected) < 1e-5
    with torch.no_grad():
        exp_loss = sum(c * float(F.cross_entropy(ref(x[i]), y[i], reduction="sum"))
                       for i, c in zip(chunks, coefs))
    assert loss == pytest.approx(exp_loss, rel=1e-5)
    again = torch.empty_like(out)  # nothing of the first pass is left to accumulate into
    assert computer.coded_gradient(chunks, coefs, again) == loss and torch.equal(again, out)


def test_empty_task_gives_zeros(digits200):
    x, y = digits200
    computer = TaskComputer(_digits_workload("mlp", x, y))
    out = torch.ones(computer.num_params)
    assert computer.coded_gradient([np.arange(0)], [1.0], out) == 0.0 and not out.any()


def test_frozen_parameters_get_zero_gradient(digits200):
    x, y = digits200
    computer = TaskComputer(_digits_workload("mlp", x, y))
    first = computer.model.parameters[0]
    first.requires_grad_(False)
    out = torch.empty(computer.num_params)
    computer.coded_gradient([np.arange(200)], [1.0], out)
    assert not out[: first.numel()].any() and out[first.numel():].any()


@pytest.mark.parametrize("loss, match", [
    (lambda m, b: F.cross_entropy(m(b[0]), b[1]), r"shape \(200,\).*scalar.*reduction='none'"),
    (lambda m, b: F.cross_entropy(m(b[0]), b[1], reduction="none")[:3], r"shape \(3,\)"),
    (lambda m, b: 3.0, "got float"),
    (lambda m, b: F.cross_entropy(m(b[0]), b[1], reduction="none") * float("nan"), "non-finite"),
])
def test_bad_losses_are_named(loss, match, digits200):
    x, y = digits200
    computer = TaskComputer(_digits_workload("mlp", x, y, loss))
    with pytest.raises(WorkloadError, match="loss_fn") as info:
        computer.coded_gradient([np.arange(200)], [1.0], torch.empty(computer.num_params))
    assert info.match(match)


@pytest.mark.parametrize("kwargs, match", [
    ({"model_fn": lambda shape, classes: None}, r"model_fn must be callable as model_fn\(\)"),
    ({"loss_fn": lambda batch: 0}, "loss_fn must be callable as loss_fn.model, batch."),
    ({"dataset_fn": 3}, "dataset_fn must be callable"),
    ({"optimizer_fn": lambda: None}, "optimizer_fn must be callable as optimizer_fn.params."),
])
def test_workload_signatures_are_checked(kwargs, match, digits200):
    x, y = digits200
    base = _digits_workload("mlp", x, y)
    args = {k: getattr(base, k) for k in ("model_fn", "loss_fn", "dataset_fn", "optimizer_fn")}
    with pytest.raises(WorkloadError, match=match):
        Workload(**{**args, **kwargs})


def test_training_reduces_loss(digits):
    x, y = torch.from_numpy(digits.x[:400]), torch.from_numpy(digits.y[:400])
    computer = TaskComputer(_digits_workload("mlp", x, y))
    model = computer.model
    opt = make_optimizer("adam", model.module.parameters(), lr=0.01, weight_decay=1e-4)
    grad = torch.empty(model.numel, dtype=torch.float64)
    start = computer.coded_gradient([np.arange(400)], [1.0], grad) / 400
    for _ in range(30):
        computer.coded_gradient([np.arange(400)], [1.0], grad)
        model.set_gradient(grad, 1.0 / 400)
        opt.step()
    assert computer.coded_gradient([np.arange(400)], [1.0], grad) / 400 < 0.5 * start


def test_optimizer_hyperparameters_pass_through():
    model = _model("logistic")
    opt = make_optimizer("sgd", model.parameters(), lr=0.3, momentum=0.9, weight_decay=0.01)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.3, 0.9, 0.01)
    assert isinstance(make_optimizer("adam", model.parameters(), betas=(0.8, 0.9)), torch.optim.Adam)


def test_optimizer_errors():
    params = list(_model("logistic").parameters())
    with pytest.raises(ValueError, match="valid names: adam, sgd"):
        make_optimizer("rmsprop", params)
    with pytest.raises(ValueError, match="'momentum'"):
        make_optimizer("adam", params, momentum=0.9)
    with pytest.raises(ValueError, match="optimizer 'sgd'"):
        make_optimizer("sgd", params, lr="fast")
    with pytest.raises(ValueError, match="learning rate"):
        make_optimizer("sgd", params, lr=-1.0)


def test_batchnorm_running_statistics_are_refused():
    """Running statistics change with every forward pass on every worker: refused. Without
    them, BatchNorm still mixes a batch's samples: a coded run's startup probe stops it
    (tests/runtime/loop/test_probe.py); an uncoded run trains it as torch DDP does."""
    from gcode.train import WorkloadError, build_model
    with pytest.raises(WorkloadError, match="BatchNorm layer '1' keeps running statistics"):
        build_model(lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), 0)
    build_model(lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False)), 0)
