"""Torch models, datasets and the gradient math of workers. Imports torch, never ray."""

from gcode.train.datasets import DATASET_NAMES, Dataset, SyntheticConfig, load_dataset
from gcode.train.grad import (
    chunk_gradient,
    coded_combination,
    flatten_params,
    full_loss,
    load_flat_params,
    num_params,
    set_single_thread,
)
from gcode.train.models import make_model, model_names, register_model
from gcode.train.optim import apply_gradient, make_optimizer

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "SyntheticConfig",
    "apply_gradient",
    "chunk_gradient",
    "coded_combination",
    "flatten_params",
    "full_loss",
    "load_dataset",
    "load_flat_params",
    "make_model",
    "make_optimizer",
    "model_names",
    "num_params",
    "register_model",
    "set_single_thread",
]
