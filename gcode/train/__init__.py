"""Torch models, datasets, workloads and the gradient math of workers. Imports torch, never ray."""

from gcode.train.compute import TaskComputer, evaluate
from gcode.train.datasets import DATASET_NAMES, Dataset, SyntheticConfig, load_dataset
from gcode.train.flat import FlatModel, num_params, set_single_thread
from gcode.train.models import make_model, make_model_factory, model_names, register_model
from gcode.train.optim import make_optimizer
from gcode.train.workload import Workload, WorkloadError, build_model, open_dataset

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "FlatModel",
    "SyntheticConfig",
    "TaskComputer",
    "Workload",
    "WorkloadError",
    "build_model",
    "evaluate",
    "load_dataset",
    "make_model",
    "make_model_factory",
    "make_optimizer",
    "model_names",
    "num_params",
    "open_dataset",
    "register_model",
    "set_single_thread",
]
