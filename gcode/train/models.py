"""Model zoo: a name -> factory registry with seeded, bit-reproducible initialisation.

A factory is called as ``factory(input_shape, num_classes, **params)`` and returns an
``nn.Module`` mapping a batch of shape ``(N, *input_shape)`` or ``(N, prod(input_shape))``
to logits of shape ``(N, num_classes)``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn

from gcode.train import nets
from gcode.train._checks import positive_int
from gcode.train._checks import seed as check_seed

ModelFactory = Callable[..., nn.Module]

_REGISTRY: dict[str, ModelFactory] = {}


def _shape(in_features: int | tuple[int, ...]) -> tuple[int, ...]:
    dims = (in_features,) if isinstance(in_features, int) else tuple(in_features)
    if not dims:
        raise ValueError("in_features must be a positive int or a non-empty tuple")
    for d in dims:
        positive_int("in_features", d)
    return dims


def _logistic(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


def _mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 64) -> nn.Module:
    positive_int("hidden", hidden)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


class SmallCNN(nn.Module):
    """Two 3x3 convs (the second with stride 2) and a linear head, for any (C, H, W) input.

    Accepts flat ``(N, C*H*W)`` batches as well as ``(N, C, H, W)``.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, channels: int = 8):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(
                f"in_features for 'cnn' must be a (C, H, W) shape, got {input_shape}; "
                "pass Dataset.input_shape"
            )
        positive_int("channels", channels)
        c, h, w = input_shape
        self.input_shape = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        # A stride-2, padding-1, 3x3 conv maps a side of length s to ceil(s / 2).
        self.head = nn.Linear(2 * channels * math.ceil(h / 2) * math.ceil(w / 2), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(x.shape[0], *self.input_shape)))


def register_model(name: str, factory: ModelFactory, *, overwrite: bool = False) -> None:
    """Make ``factory(input_shape, num_classes, **params)`` available as ``make_model(name, ...)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise ValueError(f"factory for model {name!r} must be callable")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"model {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def model_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def make_model(
    name: str,
    in_features: int | tuple[int, ...],
    num_classes: int,
    seed: int,
    **params: object,
) -> nn.Module:
    """Build model ``name``; the same arguments always give bit-identical initial parameters.

    The global torch RNG is left untouched: initialisation runs in a forked RNG seeded by ``seed``.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(model_names())}")
    shape = _shape(in_features)
    positive_int("num_classes", num_classes)
    check_seed(seed)
    factory = _REGISTRY[name]
    try:
        inspect.signature(factory).bind(shape, num_classes, **params)
    except TypeError as e:
        raise ValueError(f"bad parameters for model {name!r}: {e}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(shape, num_classes, **params)


def _build(name: str, shape: tuple[int, ...], num_classes: int, params: dict) -> nn.Module:
    return _REGISTRY[name](shape, num_classes, **params)


def make_model_factory(name: str, in_features: int | tuple[int, ...], num_classes: int,
                       **params: object) -> Callable[[], nn.Module]:
    """A picklable zero-argument ``model_fn`` for ``gcode.fit`` that builds model ``name``
    (unseeded: ``fit`` seeds torch before each call). Bad names or parameters raise here."""
    from functools import partial
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(model_names())}")
    shape = _shape(in_features)
    positive_int("num_classes", num_classes)
    try:
        inspect.signature(_REGISTRY[name]).bind(shape, num_classes, **params)
    except TypeError as e:
        raise ValueError(f"bad parameters for model {name!r}: {e}") from None
    return partial(_build, name, shape, num_classes, dict(params))


register_model("logistic", _logistic)
register_model("mlp", _mlp)
register_model("cnn", SmallCNN)
register_model("resnet18", nets.resnet18)
register_model("resnet50", nets.resnet50)
register_model("charlm", nets.CharTransformer)
