"""What a live run is built from, before any worker starts: the workload its config names, the
scheme and its policy, the coordinator's devices, and the M models with their optimizers."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..config import ConfigError, TrainConfig
from .data import model_seed


def preset_workload_of(cfg: TrainConfig):
    """The Workload of the presets the config names (train.model on train.dataset)."""
    from gcode.train.presets import preset_workload
    tr = cfg.train
    try:
        return preset_workload(tr.model, tr.dataset, model_params=tr.model_params,
                               dataset_params=tr.dataset_params, num_samples=tr.num_samples,
                               seed=tr.seed, optimizer=tr.optimizer, lr=tr.lr,
                               optimizer_params=tr.optimizer_params)
    except ValueError as exc:
        raise ConfigError("train", str(exc)) from None


def arrays_workload(cfg: TrainConfig, dataset, model_factory: Callable | None):
    """A Workload for a :class:`gcode.train.Dataset` of in-memory arrays (shipped to every worker
    inside ``dataset_fn``) and an optional ``model_factory(input_shape, num_classes, **params)``."""
    from functools import partial

    import torch
    from torch.utils.data import TensorDataset

    from gcode.train import Workload, make_model_factory, make_optimizer
    from gcode.train.presets import accuracy, classification_loss
    tr = cfg.train
    shape, classes = tuple(dataset.input_shape), dataset.num_classes
    if model_factory is None:
        model_fn = make_model_factory(tr.model, shape, classes, **tr.model_params)
    else:
        model_fn = partial(model_factory, shape, classes, **tr.model_params)
    x, y = torch.from_numpy(dataset.x), torch.from_numpy(dataset.y)
    return Workload(model_fn, classification_loss, partial(TensorDataset, x, y),
                    partial(make_optimizer, tr.optimizer, lr=tr.lr, **tr.optimizer_params),
                    metric_fn=accuracy, name=tr.model if model_factory is None else "custom")


def preset_arrays(cfg: TrainConfig):
    from gcode.train import load_dataset
    tr = cfg.train
    return load_dataset(tr.dataset, num_samples=tr.num_samples, seed=tr.seed, **tr.dataset_params)


def build_scheme(cfg: TrainConfig):
    """(scheme, policy, default M) for a validated config; 'auto' is the online tuner."""
    from gcode.codes import make_scheme
    from gcode.sim import make_policy
    n, sc = cfg.cluster.workers, cfg.scheme
    if sc.name == "auto":
        from gcode.config.tables import scheme_delay
        from gcode.sim.online import OnlineConfig, OnlineTuner
        ocfg = OnlineConfig(partial=cfg.policy_name == "partial", start_mu=cfg.policy.mu,
                            max_delay=scheme_delay(sc, n, cfg.train),
                            **({"gc_code": sc.gc_code} if sc.gc_code else {}))
        tuner = OnlineTuner(n, sc.jobs, sc.load_slope or 0.0, ocfg)
        return tuner.scheme, tuner, ocfg.max_delay + 1
    scheme = make_scheme(sc.name, n=n, jobs=sc.jobs, **cfg.scheme_params())
    policy = make_policy(cfg.policy_name, mu=cfg.policy.mu, deadline_s=cfg.policy.deadline,
                         gap=cfg.policy.gap)
    return scheme, policy, scheme.delay + 1


def live_run_config(cfg: TrainConfig, scheme, models: int, message_dtype, run_id: str,
                    names: dict):
    """The telemetry RunConfig of a live run; ``names``: its model, dataset, optimizer and loss
    (:func:`gcode.train.workload.describe`)."""
    from gcode.telemetry.messages import run_config
    return run_config(
        source="live", scheme=scheme.name, params=scheme.params, n=scheme.n, jobs=scheme.jobs,
        delay=scheme.delay, load=scheme.load, rounds_planned=scheme.total_rounds,
        policy=cfg.policy_name, mu=cfg.policy.mu, deadline_s=cfg.policy.deadline,
        time_scale=cfg.inject.time_scale, models=models, seed=cfg.train.seed,
        model=names["model"], dataset=names["dataset"], optimizer=names["optimizer"],
        message_dtype=str(message_dtype), run_id=run_id,
        extra={"mode": cfg.train.mode, "data_plane": cfg.cluster.data_plane,
               "zero": cfg.cluster.zero,
               "loss": names.get("loss", ""), "inject": cfg.inject.trace or cfg.inject.model or "",
               "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
               **({"gap": cfg.policy.gap} if cfg.policy_name == "gap" else {})})


def devices(cfg: TrainConfig):
    """(coordinator device, decode device, host decode threads) as configured (``auto``: a GPU
    when this process sees one; the decode follows the coordinator)."""
    import torch
    cc = cfg.cluster
    has_gpu = torch.cuda.is_available()
    for field_name in ("coordinator_device", "decode_device"):
        if getattr(cc, field_name) == "cuda" and not has_gpu:
            raise ConfigError(f"cluster.{field_name}", "is 'cuda' but this process sees no GPU")
    device = torch.device("cuda" if cc.coordinator_device != "cpu" and has_gpu else "cpu")
    decode = device if cc.decode_device == "auto" else torch.device(cc.decode_device)
    if "cuda" in (device.type, decode.type):
        from gcode.train.flat import exact_fp32
        exact_fp32()
    cores = os.cpu_count() or 1
    local_workers = 0 if (cc.address or os.environ.get("RAY_ADDRESS")) else cc.workers
    # leave a core for Ray's own processes; at most 4: the decode is memory-bound beyond that
    threads = cc.decode_threads or max(1, min(4, cores - local_workers - 1))
    return device, decode, threads


def build_models(cfg: TrainConfig, workload, count: int, device):
    """M replicas from ``model_fn`` (model m seeded by (seed, m)), flat storage, optimizers and
    their schedulers (None each without ``scheduler_fn``)."""
    from gcode.train import FlatModel, build_model
    from gcode.train.workload import build_optimizer, build_scheduler
    models, optimizers, schedulers = [], [], []
    for m in range(count):
        model = FlatModel(build_model(workload.model_fn, model_seed(cfg.train.seed, m)), device)
        models.append(model)
        optimizers.append(build_optimizer(workload.optimizer_fn, model.module))
        schedulers.append(build_scheduler(workload.scheduler_fn, optimizers[-1]))
    return models, optimizers, schedulers
