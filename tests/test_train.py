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
    apply_gradient,
    chunk_gradient,
    coded_combination,
    flatten_params,
    full_loss,
    load_dataset,
    load_flat_params,
    make_model,
    make_optimizer,
    model_names,
    num_params,
    register_model,
)

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
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


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
    with pytest.raises(ValueError, match="valid names: cnn, logistic, mlp"):
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


# ---------------------------------------------------------------- grad


@pytest.mark.parametrize("name", MODELS)
def test_flatten_load_roundtrip_read_only(name):
    src, dst = _model(name, 1), _model(name, 2)
    flat = flatten_params(src)
    assert flat.dtype == np.float32 and flat.shape == (num_params(src),)
    flat.setflags(write=False)  # as returned by ray.get
    load_flat_params(dst, flat)
    assert np.array_equal(flatten_params(dst), flat)
    for p, q in zip(src.parameters(), dst.parameters()):
        assert torch.equal(p, q)
    before = flatten_params(dst)
    writable = flat.copy()
    load_flat_params(dst, writable)
    writable[:] = 7.0  # the model holds a copy, not a view
    assert np.array_equal(flatten_params(dst), before)


def test_load_flat_params_wrong_size():
    with pytest.raises(ValueError, match="650 values"):
        load_flat_params(_model("logistic"), np.zeros(10, dtype=np.float32))


def _sum_loss_grad_fp64(model, x, y):
    ref = copy.deepcopy(model).double()
    F.cross_entropy(ref(x.double()), y, reduction="sum").backward()
    return torch.cat([p.grad.reshape(-1) for p in ref.parameters()]).numpy()


@pytest.mark.parametrize("name", MODELS)
def test_chunk_gradients_add_up_to_full_gradient(name, digits200):
    x, y = digits200
    model = _model(name)
    perm = np.random.default_rng(7).permutation(len(y))
    cuts = np.sort(np.random.default_rng(8).choice(np.arange(1, len(y)), size=6, replace=False))
    chunks = np.split(perm, cuts)
    total = sum(chunk_gradient(model, x[c], y[c]) for c in chunks)
    expected = _sum_loss_grad_fp64(model, x, y)
    assert total.dtype == np.float64
    assert np.linalg.norm(total - expected) / np.linalg.norm(expected) < 1e-5
    assert all(p.grad is None for p in model.parameters())


def test_empty_chunk_gives_zeros(digits200):
    x, y = digits200
    model = _model("mlp")
    g = chunk_gradient(model, x[:0], y[:0])
    assert g.dtype == np.float64 and g.shape == (num_params(model),) and not g.any()


def test_frozen_parameters_get_zero_gradient(digits200):
    x, y = digits200
    model = _model("mlp")
    first = next(model.parameters())
    first.requires_grad_(False)
    g = chunk_gradient(model, x, y)
    assert not g[: first.numel()].any() and g[first.numel() :].any()


def test_unknown_loss(digits200):
    x, y = digits200
    with pytest.raises(ValueError, match="cross_entropy"):
        chunk_gradient(_model("logistic"), x, y, loss="hinge")


def test_coded_combination_equals_manual(digits200):
    x, y = digits200
    model = _model("cnn")
    chunks = [np.arange(0, 50), np.arange(50, 120), np.arange(120, 200)]
    coefs = [0.5, -1.25, 2.0]
    expected = sum(c * chunk_gradient(model, x[i], y[i]) for i, c in zip(chunks, coefs))
    for c in chunks:
        c.setflags(write=False)  # as returned by ray.get
    np.testing.assert_array_equal(coded_combination(model, x, y, chunks, coefs), expected)
    with pytest.raises(ValueError, match="same length"):
        coded_combination(model, x, y, chunks, coefs[:2])
    with pytest.raises(ValueError, match="integer"):
        coded_combination(model, x, y, [np.array([0.5])], [1.0])


def test_full_loss_is_mean(digits200):
    x, y = digits200
    model = _model("logistic")
    expected = F.cross_entropy(model(x), y).item()
    assert full_loss(model, x, y) == pytest.approx(expected)
    assert full_loss(model, x, y) == pytest.approx(np.log(10), rel=0.2)


# ---------------------------------------------------------------- optim


def test_apply_gradient_sgd_matches_manual_step(digits200):
    x, y = digits200
    model = _model("mlp")
    before = flatten_params(model).astype(np.float64)
    grad = chunk_gradient(model, x, y)
    grad.setflags(write=False)
    lr, scale = 0.1, 1.0 / len(y)
    apply_gradient(model, make_optimizer("sgd", model.parameters(), lr=lr), grad, scale)
    expected = (before - lr * grad * scale).astype(np.float32)
    np.testing.assert_allclose(flatten_params(model), expected, rtol=0, atol=1e-6)


def test_apply_gradient_wrong_size():
    model = _model("logistic")
    opt = make_optimizer("sgd", model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="650 values"):
        apply_gradient(model, opt, np.zeros(3), 1.0)


def test_training_reduces_loss(digits):
    x, y = torch.from_numpy(digits.x[:400]), torch.from_numpy(digits.y[:400])
    model = _model("mlp")
    opt = make_optimizer("adam", model.parameters(), lr=0.01, weight_decay=1e-4)
    start = full_loss(model, x, y)
    for _ in range(30):
        apply_gradient(model, opt, chunk_gradient(model, x, y), 1.0 / len(y))
    assert full_loss(model, x, y) < 0.5 * start


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
