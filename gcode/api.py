"""``gcode.fit``: train your own model, loss and dataset with a coding scheme, on Ray.

Three small typed configs, shaped like Ray Train's, say *how* to train; four functions say
*what*::

    result = gcode.fit(model_fn, loss_fn, dataset_fn, optimizer_fn,
                       coding=gcode.CodingConfig(scheme="msgc", B=1, W=2, lam=2),
                       scaling=gcode.ScalingConfig(workers=4),
                       run=gcode.RunConfig(jobs=40, batch_size=256, seed=0))

The configs map one to one onto the sections of :class:`gcode.config.TrainConfig` (the form
``gcode train`` and TOML files use), which validates everything in one place; errors name the
field as you wrote it (``coding.B: must be >= 1, got 0``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import CheckpointConfig, ConfigError, Fault, InjectConfig, LogConfig, TrainConfig, validate


@dataclass
class CodingConfig:
    """The coding scheme and the rule that ends a round (``gcode simulate``'s flags)."""

    scheme: str = "msgc"         # uncoded | ignore | gc | srsgc | msgc | auto
    s: int | None = None         # gc / ignore: stragglers tolerated per round (default 1)
    B: int | None = None         # srsgc / msgc: burst length (default 1)
    W: int | None = None         # srsgc / msgc: window (default 2)
    lam: int | None = None       # srsgc / msgc: distinct stragglers per window (default min(2, n))
    gc_code: str | None = None   # group | cyclic | fr (default group; auto: fr)
    policy: str = "paper"        # paper | partial | earliest | gap | deadline | all
    mu: float = 1.0              # paper / partial: stragglers are slower than (1+mu)·fastest
    gap: float = 0.05            # gap: a round ends after gap × the latest arrival's time quiet
    deadline: float | None = None  # deadline policy: seconds after dispatch
    load_slope: float | None = None  # auto: seconds per unit load (default: measured live)


@dataclass
class ScalingConfig:
    """Where the workers run (Ray) and what each gets."""

    workers: int = 4             # n
    gpus_per_worker: float = 0.0  # fractional shares one GPU among several workers
    cpus_per_worker: float | None = None  # default: share the free CPUs, at most 1 each
    address: str | None = None  # a Ray cluster; None starts a local loopback instance
    num_cpus: int | None = None  # CPUs of the local instance (default: all cores)
    placement: str = "spread"    # spread | pack
    max_restarts: int = 3
    round_timeout_s: float = 120.0
    startup_timeout_s: float = 180.0
    coordinator_device: str = "auto"  # auto | cpu | cuda: where the coordinator's models live
    decode_device: str = "auto"  # auto (the coordinator's) | cpu | cuda: where jobs decode (fp64)
    decode_threads: int | None = None
    transport: str = "auto"      # auto | shm | ray (auto: shared memory when all workers are local)
    prefetch: str = "auto"       # auto | on | off: read the next batch while computing (auto: GPU)


@dataclass
class RunConfig:
    """How long to train and what to record. ``inject``, ``checkpoint`` and ``logs`` take
    :class:`InjectConfig`, :class:`CheckpointConfig` and :class:`LogConfig`."""

    jobs: int = 40               # full-batch gradients to compute (rounds = jobs + T)
    batch_size: int = 256        # samples per job
    seed: int = 0                # model init, job batches, injected delays
    models: int | None = None    # M concurrent models (default T+1)
    mode: str = "concurrent"     # concurrent | delayed (one model, gradients T rounds late)
    inject: InjectConfig = field(default_factory=InjectConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logs: LogConfig = field(default_factory=LogConfig)
    monitor: str | None = None   # serve the gRPC monitor at HOST:PORT (gcode watch HOST:PORT)
    monitor_token: str | None = None
    eval_every: int | None = None  # held-out loss (and accuracy) every K rounds
    check_decode: bool = False   # recompute every decoded gradient directly (diagnostic)
    streaming_decode: bool = True
    pipeline: bool = True        # start round r+1 before round r's decodes and steps when its
    #                              job's model has none outstanding (M >= T+2); same results
    dispatch: str = "round"      # round | arrival: send a worker round r+1 at its round-r
    #                              arrival (with pipeline; uncoded, gc, msgc); same results
    faults: tuple[Fault, ...] = ()
    #: free-form labels recorded in the run's config, logs and checkpoints (``gcode train`` puts
    #: its preset names here); a resumed run must carry the same ones
    tags: dict = field(default_factory=dict)


@dataclass
class FitResult:
    metrics: dict                # what ``gcode train --json`` prints (param_checksum included)
    models: list                 # the M trained nn.Modules, on CPU
    checkpoint: str | None       # the newest checkpoint folder, or None


#: (public field, TrainConfig field)
_FIELDS = (
    *[(f"coding.{k}", f"scheme.{k}") for k in ("s", "B", "W", "lam", "gc_code")],
    ("coding.scheme", "scheme.name"), ("coding.load_slope", "scheme.auto_load_slope"),
    ("coding.policy", "policy.name"), ("coding.mu", "policy.mu"),
    ("coding.gap", "policy.gap"),
    ("coding.deadline", "policy.deadline_s"),
    *[(f"scaling.{k}", f"cluster.{k}") for k in (
        "workers", "gpus_per_worker", "address", "num_cpus", "placement", "max_restarts",
        "round_timeout_s", "startup_timeout_s", "coordinator_device", "decode_device",
        "decode_threads", "transport", "prefetch")],
    ("scaling.cpus_per_worker", "cluster.worker_cpus"),
    ("run.jobs", "scheme.jobs"),
    *[(f"run.{k}", f"train.{k}") for k in (
        "batch_size", "seed", "models", "mode", "eval_every", "check_decode", "streaming_decode",
        "pipeline", "dispatch")],
)
_TAGGED = ("model", "model_params", "dataset", "dataset_params", "num_samples", "optimizer", "lr",
           "optimizer_params")


def to_train_config(coding: CodingConfig, scaling: ScalingConfig, run: RunConfig) -> TrainConfig:
    """The validated TrainConfig of the three public configs (ConfigError names their field)."""
    parts = {"coding": coding, "scaling": scaling, "run": run}
    for name, cls in (("coding", CodingConfig), ("scaling", ScalingConfig), ("run", RunConfig)):
        if not isinstance(parts[name], cls):
            raise ConfigError(name, f"must be a gcode.{cls.__name__}, got {type(parts[name]).__name__}")
    data: dict[str, dict] = {s: {} for s in ("scheme", "policy", "cluster", "train")}
    for public, internal in _FIELDS:
        section, key = internal.split(".")
        owner, attr = public.split(".")
        data[section][key] = getattr(parts[owner], attr)
    unknown = sorted(set(run.tags) - set(_TAGGED))
    if unknown:
        raise ConfigError(f"run.tags.{unknown[0]}", f"unknown tag; valid: {', '.join(_TAGGED)}")
    data["train"].update(run.tags)
    try:
        cfg = TrainConfig(**{s: _section(s, v) for s, v in data.items()}, inject=run.inject,
                          log=run.logs, checkpoint=run.checkpoint, faults=tuple(run.faults))
        validate(cfg)
    except ConfigError as exc:
        raise ConfigError(public_field(exc.field), str(exc).partition(": ")[2]) from None
    return cfg


def _section(name: str, values: dict):
    from .config import SECTIONS
    from .config_checks import check_type, type_hints
    cls = SECTIONS[name]
    hints = type_hints(cls)
    return cls(**{k: check_type(f"{name}.{k}", v, hints[k]) for k, v in values.items()})


def public_field(internal: str) -> str:
    """``scheme.B`` -> ``coding.B``: a TrainConfig field as the public configs name it."""
    for public, inner in _FIELDS:
        if internal == inner or internal.startswith(inner + "."):
            return public + internal[len(inner):]
    if internal.startswith("faults"):
        return "run." + internal
    section, _, rest = internal.partition(".")
    renamed = {"inject": "run.inject", "log": "run.logs", "checkpoint": "run.checkpoint",
               "train": "run.tags"}.get(section)
    return f"{renamed}.{rest}".rstrip(".") if renamed else internal


def from_train_config(cfg: TrainConfig) -> tuple[CodingConfig, ScalingConfig, RunConfig]:
    """The inverse of :func:`to_train_config` (``gcode train`` builds a TrainConfig first)."""
    parts = {"coding": {}, "scaling": {}, "run": {}}
    for public, internal in _FIELDS:
        owner, attr = public.split(".")
        section, key = internal.split(".")
        parts[owner][attr] = getattr(getattr(cfg, section), key)
    tags = {k: getattr(cfg.train, k) for k in _TAGGED}
    run = RunConfig(**parts["run"], inject=dataclasses.replace(cfg.inject),
                    checkpoint=dataclasses.replace(cfg.checkpoint), logs=dataclasses.replace(cfg.log),
                    faults=cfg.faults, tags=tags)
    return CodingConfig(**parts["coding"]), ScalingConfig(**parts["scaling"]), run


def fit(model_fn, loss_fn, dataset_fn, optimizer_fn, *, coding: CodingConfig | None = None,
        scaling: ScalingConfig | None = None, run: RunConfig | None = None,
        collate_fn: Callable | None = None, eval_dataset_fn: Callable | None = None,
        metric_fn: Callable | None = None, progress: bool | Callable[[dict], None] = True,
        pool=None) -> FitResult:
    """Train live on Ray with a coding scheme and return the metrics and trained models.

    * ``model_fn() -> nn.Module``: gcode seeds torch before each call, so replicas start equal;
    * ``loss_fn(model, batch) -> Tensor`` of shape ``(len(batch),)``: the per-sample losses;
    * ``dataset_fn() -> Dataset``: a map-style dataset, called once on each worker, which reads
      only the items of its chunks (nothing of the dataset travels through Ray);
    * ``optimizer_fn(params) -> torch.optim.Optimizer``;
    * ``collate_fn``: turns a list of items into a batch (default
      ``torch.utils.data.default_collate``: tensors, tuples and dicts);
    * ``eval_dataset_fn``/``metric_fn``: the held-out set for ``RunConfig(eval_every=K)`` and
      an optional per-sample correctness for its accuracy;
    * ``progress``: True for a progress bar on stderr, or a callable given each round's record;
    * ``pool``: running worker actors to reuse (:func:`gcode.runtime.start_workers`).
    """
    from .runtime.run import execute
    from .train import Workload
    workload = Workload(model_fn, loss_fn, dataset_fn, optimizer_fn, collate_fn, eval_dataset_fn,
                        metric_fn, name=getattr(model_fn, "__name__", "custom"))
    run = run if run is not None else RunConfig()
    cfg = to_train_config(coding or CodingConfig(), scaling or ScalingConfig(), run)
    if run.tags.get("model"):
        workload = dataclasses.replace(workload, name=run.tags["model"])
    monitor = None
    if run.monitor:
        from .telemetry.monitor import MonitorServer
        monitor = MonitorServer(run.monitor, token=run.monitor_token)
        print(f"monitor: serving on {' and '.join(monitor.addresses)} (gcode watch "
              f"{monitor.target})", file=sys.stderr)
    bar = _ProgressBar() if progress is True else None
    try:
        metrics, models = execute(cfg, workload, pool=pool, monitor=monitor,
                                  progress=bar.update if bar else (progress or None))
    except ConfigError as exc:  # found at run time (the dataset's size, a GPU): name it as set
        raise ConfigError(public_field(exc.field), str(exc).partition(": ")[2]) from None
    finally:
        if bar is not None:
            bar.close()
        if monitor is not None:
            monitor.close()
    return FitResult(metrics, models, metrics.get("checkpoint"))


class _ProgressBar:
    """A tqdm bar on stderr, created at the first round (setup is reported separately)."""

    def __init__(self):
        self.bar = None

    def update(self, rec: dict) -> None:
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=rec["rounds"], desc="train", unit="round", file=sys.stderr,
                            leave=False)
        loss = rec.get("loss")
        self.bar.set_postfix_str(f"decoded {rec['decoded_jobs']}/{rec['jobs']} "
                                 f"stragglers {len(rec['stragglers'])} waits {rec['waits']}"
                                 + (f" loss {loss:.4f}" if loss is not None else ""), refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["CheckpointConfig", "CodingConfig", "FitResult", "InjectConfig", "LogConfig",
           "RunConfig", "ScalingConfig", "fit", "from_train_config", "to_train_config"]
