"""In-memory classification datasets: bundled digits, seeded synthetic blobs, or user arrays."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from gcode.train._checks import positive_int
from gcode.train._checks import seed as check_seed


@dataclass(frozen=True)
class Dataset:
    """A classification dataset held as flat arrays.

    Invariants (checked on construction): ``x`` is C-contiguous float32 of shape
    ``(n, prod(input_shape))`` with n >= 1 and finite values; ``y`` is int64 of shape ``(n,)``
    with labels in ``[0, num_classes)``.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
            raise ValueError("x must be a 2-D float32 numpy array; use Dataset.from_arrays to convert")
        if not x.flags.c_contiguous:
            raise ValueError("x must be C-contiguous")
        if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1:
            raise ValueError("y must be a 1-D int64 numpy array; use Dataset.from_arrays to convert")
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        if len(x) == 0:
            raise ValueError("a dataset needs at least one sample")
        if not np.isfinite(x).all():
            raise ValueError(f"x has {int(np.size(x) - np.isfinite(x).sum())} non-finite values")
        positive_int("num_classes", self.num_classes)
        if not isinstance(self.input_shape, tuple) or not all(
            isinstance(d, int) and d >= 1 for d in self.input_shape
        ):
            raise ValueError(f"input_shape must be a tuple of positive ints, got {self.input_shape!r}")
        if math.prod(self.input_shape) != x.shape[1]:
            raise ValueError(
                f"input_shape {self.input_shape} has {math.prod(self.input_shape)} features "
                f"but x has {x.shape[1]}"
            )
        bad = (y < 0) | (y >= self.num_classes)
        if bad.any():
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}); found {int(bad.sum())} outside, "
                f"e.g. {int(y[bad][0])}"
            )

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        *,
        num_classes: int | None = None,
        input_shape: tuple[int, ...] | None = None,
    ) -> Dataset:
        """Build a dataset from ``x`` of shape ``(n, *input_shape)`` and integer labels ``y``.

        ``input_shape`` defaults to ``x.shape[1:]`` and ``num_classes`` to ``max(y) + 1``.
        Arrays are copied only when a dtype or layout conversion is needed.
        """
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim < 2:
            raise ValueError(f"x must have shape (n, features...), got shape {x.shape}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"x must be numeric, got dtype {x.dtype}")
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
        shape = tuple(int(d) for d in (x.shape[1:] if input_shape is None else input_shape))
        if num_classes is None:
            num_classes = int(y.max()) + 1 if y.size else 1
        return cls(
            x=np.ascontiguousarray(x.reshape(len(x), math.prod(x.shape[1:])), dtype=np.float32),
            y=np.ascontiguousarray(y, dtype=np.int64),
            num_classes=num_classes,
            input_shape=shape,
        )


@dataclass(frozen=True)
class SyntheticConfig:
    """Gaussian blobs: class centres ~ N(0, I), samples = centre + N(0, noise^2 I)."""

    num_samples: int = 1000
    num_features: int = 20
    num_classes: int = 10
    noise: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_samples", "num_features", "num_classes"):
            positive_int(name, getattr(self, name))
        if not (isinstance(self.noise, (int, float)) and math.isfinite(self.noise) and self.noise > 0):
            raise ValueError(f"noise must be a positive finite number, got {self.noise!r}")
        check_seed(self.seed)


def _synthetic(cfg: SyntheticConfig) -> Dataset:
    rng = np.random.default_rng(cfg.seed)
    centres = rng.standard_normal((cfg.num_classes, cfg.num_features))
    y = rng.integers(cfg.num_classes, size=cfg.num_samples)
    x = centres[y] + cfg.noise * rng.standard_normal((cfg.num_samples, cfg.num_features))
    return Dataset(x.astype(np.float32), y.astype(np.int64), cfg.num_classes, (cfg.num_features,))


def _digits(num_samples: int | None, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    if num_samples is not None:
        if positive_int("num_samples", num_samples) > len(y):
            raise ValueError(f"num_samples for 'digits' must be at most {len(y)}, got {num_samples}")
        keep = np.random.default_rng(seed).choice(len(y), size=num_samples, replace=False)
        x, y = x[keep], y[keep]
    return Dataset(np.ascontiguousarray(x), y, 10, (1, 8, 8))


DATASET_NAMES = ("digits", "synthetic")


def load_dataset(name: str, *, num_samples: int | None = None, seed: int = 0, **params: object) -> Dataset:
    """Load a named dataset.

    - ``"digits"``: scikit-learn's bundled 8x8 digits (1797 samples, pixels scaled to [0, 1],
      ``input_shape == (1, 8, 8)``), in bundled order; with ``num_samples`` a seeded random subset.
      Takes no extra params.
    - ``"synthetic"``: seeded Gaussian blobs; params are the fields of ``SyntheticConfig``.
    """
    check_seed(seed)
    if name == "digits":
        if params:
            raise ValueError(f"dataset 'digits' takes no parameters, got {sorted(params)}")
        return _digits(num_samples, seed)
    if name == "synthetic":
        valid = {f.name for f in fields(SyntheticConfig)} - {"num_samples", "seed"}
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ValueError(f"unknown parameters {unknown} for dataset 'synthetic'; valid: {sorted(valid)}")
        if num_samples is not None:
            params["num_samples"] = num_samples
        return _synthetic(SyntheticConfig(seed=seed, **params))  # type: ignore[arg-type]
    raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
