"""Typed run configuration for ``gcode train``: small nested dataclasses, validated in one place.

A config comes from defaults, a TOML or YAML file (same layout: one table per section), and/or
command-line flags (``gcode.runtime.cli_args``). Every path ends in :func:`validate`, which
raises :class:`ConfigError` naming the dotted field (``scheme.B: must be >= 1, got 0``).

Example TOML::

    [scheme]
    name = "msgc"        # uncoded | ignore | gc | srsgc | msgc
    B = 1
    W = 2
    lam = 2
    jobs = 40

    [policy]
    name = "paper"       # paper | partial | earliest | gap | deadline | all
    mu = 1.0

    [cluster]
    workers = 4

    [train]
    model = "mlp"
    dataset = "digits"
    optimizer = "adam"
    lr = 0.01
    batch_size = 256

    [inject]             # optional straggler injection
    model = "bursty"
    params = { B = 1, W = 2, lam = 2, base = 0.02, slowdown = 5.0 }

    [checkpoint]         # optional: checkpoint every K rounds and on a stop request
    dir = "runs/ckpt"
    every = 10

    [[faults]]           # optional fault injection (tests)
    round = 3
    worker = 1
    kind = "raise"       # raise | exit | kill | shape | nan | tag

This module imports neither Ray nor torch at import time.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEME_NAMES = ("uncoded", "ignore", "gc", "srsgc", "msgc", "auto")
POLICY_NAMES = ("paper", "partial", "earliest", "gap", "deadline", "all")
MODES = ("concurrent", "delayed")
INJECT_MODES = ("add", "target")
PLACEMENTS = ("spread", "pack")
TRANSPORTS = ("auto", "shm", "ray")
PREFETCH = ("auto", "on", "off")
DISPATCH = ("round", "arrival")
#: schemes whose workers' next tasks follow their own arrivals (Scheme.plans_from_own_arrivals)
DISPATCH_AT_ARRIVAL_SCHEMES = ("uncoded", "ignore", "gc", "msgc")
FAULT_KINDS = ("raise", "exit", "kill", "shape", "nan", "tag")
GC_CODES = ("cyclic", "fr")
DATASET_NAMES = ("digits", "synthetic", "cifar", "diabetes", "text")  # gcode.train.presets
COORDINATOR_DEVICES = ("auto", "cpu", "cuda")
#: bounds that keep a small config from asking for unbounded memory or time: n (a scheme's work
#: per round is O(n) numpy, `gcode simulate` runs 10,000 workers x 1,000 rounds in about a
#: second; a cyclic code's rows, n solves of s x s, are built only when tasks are handed out),
#: jobs, and the (rounds x n) float64 table of injected delays
MAX_WORKERS = 100_000
MAX_JOBS = 10_000_000
MAX_DELAY_TABLE_BYTES = 1 << 30

#: parameters each scheme takes from [scheme] (mirrors gcode.codes.SCHEMES)
SCHEME_PARAMS = {"uncoded": (), "ignore": ("s",), "gc": ("s", "gc_code"),
                 "srsgc": ("B", "W", "lam", "gc_code"), "msgc": ("B", "W", "lam", "gc_code"),
                 "auto": ("gc_code",)}


class ConfigError(ValueError):
    """A bad config value; the message starts with the dotted field name."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}" if field_name else message)


@dataclass
class SchemeConfig:
    """The coding scheme, as in ``gcode simulate``."""

    name: str = "msgc"          # uncoded | ignore | gc | srsgc | msgc | auto (online tuner)
    s: int | None = None        # gc / ignore: stragglers per round (default 1)
    B: int | None = None        # srsgc / msgc: burst length (default 1)
    W: int | None = None        # srsgc / msgc: window (default 2)
    lam: int | None = None      # srsgc / msgc: distinct stragglers per window (default min(2, n))
    gc_code: str | None = None  # gc / srsgc / msgc / auto: cyclic | fr (default cyclic; auto: fr)
    jobs: int = 40              # jobs to finish (rounds = jobs + T)
    auto_load_slope: float | None = None  # auto: seconds per unit load the tuner assumes
    #                                       (default: measured live, round by round)


@dataclass
class PolicyConfig:
    """How a round ends (the same policy objects as the simulator)."""

    name: str = "paper"         # paper | partial (paper cut, partial-wait fallback) | earliest
    #                             (end once the missing workers conform) | gap (end once no
    #                             worker arrived for a while and the missing conform) | deadline
    #                             | all
    mu: float = 1.0             # paper/partial: stragglers are slower than (1+mu) x fastest
    gap: float = 0.05           # gap: the round ends once no worker has arrived for
    #                             gap x the latest arrival's time (and the missing conform)
    deadline_s: float | None = None  # deadline: cut at this many seconds


@dataclass
class ClusterConfig:
    """Ray and worker actors."""

    workers: int = 4            # n
    address: str | None = None  # Ray address; None starts a local loopback instance
    num_cpus: int | None = None  # CPUs of the local instance (default: os.cpu_count())
    worker_cpus: float | None = None  # CPUs per actor (default: min(1, cluster CPUs / n))
    placement: str = "spread"   # spread: round-robin over nodes; pack: Ray's default
    max_restarts: int = 3       # actor restarts after a crash
    round_timeout_s: float = 120.0  # a round (incl. fallback retries) longer than this aborts
    startup_timeout_s: float = 180.0  # actors must be ready within this
    retry_backoff_s: float = 0.25  # pause before re-sending a failed worker's tasks (fallback)
    gpus_per_worker: float = 0.0  # GPUs each actor reserves (fractional: actors share a GPU);
    #                               > 0 places each worker's model and batches on its GPU
    coordinator_device: str = "auto"  # auto (a GPU when this process sees one) | cpu | cuda:
    #                                   where the coordinator's models live and jobs decode (fp64)
    decode_device: str = "auto"  # auto (the coordinator's device) | cpu | cuda: where the fp64
    #                              decode runs (results arrive in host memory)
    decode_threads: int | None = None  # host decode threads (default: the CPUs the workers leave)
    transport: str = "auto"     # auto | shm | ray: how calls and arrays move per round (auto:
    #                             shared memory when every worker is on this node, else Ray)
    prefetch: str = "auto"      # auto | on | off: workers read their next batch on a background
    #                             thread while computing (auto: on for GPU workers)

    @property
    def reads_ahead(self) -> bool:
        """Whether workers read ahead: ``prefetch`` on, or auto with GPU workers, whose device
        would otherwise idle while the CPU reads."""
        return self.prefetch == "on" or (self.prefetch == "auto" and self.gpus_per_worker > 0)


@dataclass
class TrainSection:
    """What is trained and how the coordinator steps it."""

    model: str = "mlp"          # logistic | mlp | cnn | resnet18 | resnet50 | charlm | registered
    model_params: dict = field(default_factory=dict)
    dataset: str = "digits"     # digits | synthetic | cifar | diabetes | text (gcode.train.presets)
    dataset_params: dict = field(default_factory=dict)
    num_samples: int | None = None  # dataset size (digits/diabetes/text: a subset; others: any)
    batch_size: int = 256       # samples per job (one full gradient)
    optimizer: str = "adam"     # sgd | adam
    lr: float = 0.01
    optimizer_params: dict = field(default_factory=dict)  # momentum, weight_decay, betas, ...
    models: int | None = None   # M concurrent models (default T+1; >= T+1)
    mode: str = "concurrent"    # concurrent | delayed (one model, gradient T rounds stale)
    seed: int = 0
    check_decode: bool = False  # compare every decoded gradient with a direct one
    eval_every: int | None = None  # held-out loss (and accuracy) of every model every K rounds
    streaming_decode: bool = True  # fold coefficient-1 results into fp64 accumulators on arrival
    pipeline: bool = True       # start round r+1 before round r's decodes when its inputs are final
    dispatch: str = "round"     # round | arrival: send a worker its round-(r+1) tasks when its
    #                             round-r results arrive (with pipelining, once they are final)


@dataclass
class InjectConfig:
    """Straggler injection: each worker sleeps per round."""

    model: str | None = None    # bursty | gilbert_elliott | shifted_exp | pareto | trace
    params: dict = field(default_factory=dict)  # the delay model's parameters
    trace: str | None = None    # CSV trace to replay (first n columns)
    time_scale: float = 1.0     # injected seconds = sample x time_scale
    mode: str = "add"           # add: sleep = injected time after compute; target: pad to it
    seed: int | None = None     # delay-model seed (default: train.seed)


@dataclass
class LogConfig:
    jsonl: str | None = None    # per-round JSONL log path (plain dicts, this module's format)
    run_log: str | None = None  # telemetry run log prefix: PREFIX.pb + PREFIX.jsonl
    #                             (gcode replay / plot read it)


@dataclass
class CheckpointConfig:
    """Checkpoint/resume of a live run (:mod:`gcode.runtime.checkpoint`)."""

    dir: str | None = None      # write checkpoints here, one round-NNNNNNNN/ folder each
    every: int = 10             # rounds between checkpoints (with dir); a stop request also writes one
    keep: int = 2               # newest complete checkpoints kept (older ones are deleted after a
    #                             new one is complete)
    resume: str | None = None   # continue from this checkpoint: a checkpoint.dir (its newest
    #                             checkpoint) or one round-NNNNNNNN/ folder in it


@dataclass(frozen=True)
class Fault:
    """Fault injection: ``worker`` misbehaves in round ``round`` (first attempt only)."""

    round: int
    worker: int
    kind: str                   # raise | exit | kill | shape | nan | tag (wrong round tag)


@dataclass
class TrainConfig:
    scheme: SchemeConfig = field(default_factory=SchemeConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    train: TrainSection = field(default_factory=TrainSection)
    inject: InjectConfig = field(default_factory=InjectConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    faults: tuple[Fault, ...] = ()

    # ---- derived values -------------------------------------------------------------------
    def scheme_params(self) -> dict:
        """Parameters for ``make_scheme``: the scheme's own fields, with small defaults for n."""
        return scheme_params(self.scheme, self.cluster.workers)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["faults"] = [dataclasses.asdict(f) for f in self.faults]
        return out

    def replace(self, **overrides: Any) -> TrainConfig:
        """A validated copy with dotted overrides, e.g. ``replace(**{"scheme.B": 2})``."""
        return with_overrides(self, overrides)


SECTIONS = {"scheme": SchemeConfig, "policy": PolicyConfig, "cluster": ClusterConfig,
            "train": TrainSection, "inject": InjectConfig, "log": LogConfig,
            "checkpoint": CheckpointConfig}


def scheme_params(sc: SchemeConfig, n: int) -> dict:
    """make_scheme parameters (for ``auto``: only gc_code, when given)."""
    accepted = SCHEME_PARAMS[sc.name]
    if sc.name == "auto":
        return {} if sc.gc_code is None else {"gc_code": sc.gc_code}
    defaults = {"s": 1 if n > 1 else 0, "B": 1, "W": 2, "lam": min(2, n), "gc_code": "cyclic"}
    params = {}
    for key in accepted:
        value = getattr(sc, key)
        params[key] = defaults[key] if value is None else value
    return params


# ---- building from dicts ------------------------------------------------------------------
def _type_hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _check_type(where: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a simple annotation; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", ())):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(where, value, inner[0])
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(where, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(where, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(where, f"must be a string, got {value!r}")
        return value
    if hint is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"must be a table/mapping, got {value!r}")
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ConfigError(where, f"keys must be strings, got {bad[0]!r}")
        return dict(value)
    return value


def auto_max_delay() -> int:
    """The largest delay T the online tuner (scheme 'auto') may switch to."""
    from .sim.online import OnlineConfig
    return OnlineConfig().max_delay


# ---- validation: the one place ------------------------------------------------------------
def _positive(where: str, value, allow_none=False, integer=False):
    if value is None and allow_none:
        return
    if integer:
        _check_type(where, value, int)
        if value < 1:
            raise ConfigError(where, f"must be >= 1, got {value}")
        return
    _check_type(where, value, float)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(where, f"must be a positive finite number, got {value}")


def _choice(where: str, value, choices):
    if value not in choices:
        raise ConfigError(where, f"must be one of {', '.join(choices)}; got {value!r}")


def validate(cfg: TrainConfig, paths: bool = True) -> None:
    """Check every field and the cross-field rules; raise ConfigError naming the field.
    ``paths=False`` skips whether the log files can be written (for a config that flags will
    still change, such as a checkpoint's own)."""
    for name, cls in SECTIONS.items():
        section = getattr(cfg, name)
        if not isinstance(section, cls):
            raise ConfigError(name, f"must be a {cls.__name__}, got {type(section).__name__}")
        hints = _type_hints(cls)
        for f in dataclasses.fields(cls):
            _check_type(f"{name}.{f.name}", getattr(section, f.name), hints[f.name])

    sc, pc, cc, tc, ic = cfg.scheme, cfg.policy, cfg.cluster, cfg.train, cfg.inject
    # cluster
    _positive("cluster.workers", cc.workers, integer=True)
    if cc.workers > MAX_WORKERS:
        raise ConfigError("cluster.workers", f"must be <= {MAX_WORKERS}, got {cc.workers}")
    _positive("cluster.num_cpus", cc.num_cpus, allow_none=True, integer=True)
    _positive("cluster.worker_cpus", cc.worker_cpus, allow_none=True)
    _choice("cluster.placement", cc.placement, PLACEMENTS)
    _choice("cluster.transport", cc.transport, TRANSPORTS)
    _choice("cluster.prefetch", cc.prefetch, PREFETCH)
    if cc.address is not None:
        from .runtime.connect import endpoint
        endpoint(cc.address)  # its form only; whether anything answers is checked at start
    if cc.max_restarts < 0:
        raise ConfigError("cluster.max_restarts", f"must be >= 0, got {cc.max_restarts}")
    _positive("cluster.round_timeout_s", cc.round_timeout_s)
    if not (math.isfinite(cc.gpus_per_worker) and cc.gpus_per_worker >= 0):
        raise ConfigError("cluster.gpus_per_worker", f"must be >= 0, got {cc.gpus_per_worker}")
    _choice("cluster.coordinator_device", cc.coordinator_device, COORDINATOR_DEVICES)
    _choice("cluster.decode_device", cc.decode_device, COORDINATOR_DEVICES)
    _positive("cluster.decode_threads", cc.decode_threads, allow_none=True, integer=True)
    _positive("cluster.startup_timeout_s", cc.startup_timeout_s)
    if cc.retry_backoff_s < 0:
        raise ConfigError("cluster.retry_backoff_s", f"must be >= 0, got {cc.retry_backoff_s}")
    n = cc.workers

    # scheme
    _choice("scheme.name", sc.name, SCHEME_NAMES)
    _positive("scheme.jobs", sc.jobs, integer=True)
    if sc.jobs > MAX_JOBS:
        raise ConfigError("scheme.jobs", f"must be <= {MAX_JOBS}, got {sc.jobs}")
    if sc.gc_code is not None:
        _choice("scheme.gc_code", sc.gc_code, GC_CODES)
    if sc.auto_load_slope is not None:
        if sc.name != "auto":
            raise ConfigError("scheme.auto_load_slope", f"only applies to scheme 'auto', not {sc.name!r}")
        if not (math.isfinite(sc.auto_load_slope) and sc.auto_load_slope >= 0):
            raise ConfigError("scheme.auto_load_slope", f"must be >= 0, got {sc.auto_load_slope}")
    accepted = SCHEME_PARAMS[sc.name]
    for key in ("s", "B", "W", "lam"):
        value = getattr(sc, key)
        if value is not None and key not in accepted:
            takes = ", ".join(k for k in accepted if k != "gc_code") or "no parameters"
            raise ConfigError(f"scheme.{key}", f"is not a parameter of scheme {sc.name!r} "
                                               f"(it takes: {takes})")
    params = scheme_params(sc, n)
    if "s" in params and not 0 <= params["s"] < n:
        raise ConfigError("scheme.s", f"must satisfy 0 <= s < workers={n}, got {params['s']}")
    if "B" in params:
        B, W, lam = params["B"], params["W"], params["lam"]
        if B < 1:
            raise ConfigError("scheme.B", f"must be >= 1, got {B}")
        if W <= B:
            raise ConfigError("scheme.W", f"must be > B={B}, got {W}")
        if not 0 <= lam <= n:
            raise ConfigError("scheme.lam", f"must satisfy 0 <= lam <= workers={n}, got {lam}")
    probe_delay = auto_max_delay() if sc.name == "auto" else None
    if probe_delay is None:
        try:
            from .codes import make_scheme
            probe_delay = make_scheme(sc.name, n=n, jobs=sc.jobs, **params).delay
        except ValueError as exc:
            raise ConfigError("scheme", str(exc)) from None

    table = (sc.jobs + probe_delay) * n * 8
    if table > MAX_DELAY_TABLE_BYTES:
        raise ConfigError("scheme.jobs", f"{sc.jobs} jobs x {n} workers need a {table / 2**30:.1f} GiB "
                                         f"table of per-round delays (at most "
                                         f"{MAX_DELAY_TABLE_BYTES >> 30} GiB); lower scheme.jobs")

    # policy
    _choice("policy.name", pc.name, POLICY_NAMES)
    if sc.name == "auto" and pc.name not in ("paper", "partial"):
        raise ConfigError("policy.name", f"scheme 'auto' ends rounds itself with the paper cut and "
                                         f"the paper or partial fallback; got {pc.name!r}")
    _positive("policy.mu", pc.mu)
    _positive("policy.gap", pc.gap)
    if pc.name == "deadline" and pc.deadline_s is None:
        raise ConfigError("policy.deadline_s", "is required with policy 'deadline' (--deadline SECONDS)")
    _positive("policy.deadline_s", pc.deadline_s, allow_none=True)

    # train
    _choice("train.mode", tc.mode, MODES)
    _positive("train.batch_size", tc.batch_size, integer=True)
    _positive("train.num_samples", tc.num_samples, allow_none=True, integer=True)
    _positive("train.lr", tc.lr)
    if tc.seed < 0:
        raise ConfigError("train.seed", f"must be >= 0, got {tc.seed}")
    if tc.num_samples is not None and tc.batch_size > tc.num_samples:
        raise ConfigError("train.batch_size", f"must be <= train.num_samples={tc.num_samples}, "
                                              f"got {tc.batch_size}")
    if tc.models is not None:
        _positive("train.models", tc.models, integer=True)
        if tc.mode == "concurrent" and tc.models < probe_delay + 1:
            raise ConfigError("train.models", f"must be >= T+1 = {probe_delay + 1} for scheme "
                                              f"{sc.name} {params} (job t trains model t mod M and "
                                              f"is decoded up to T={probe_delay} rounds later); "
                                              f"got {tc.models}, or use mode 'delayed'")
        if tc.mode == "delayed" and tc.models != 1:
            raise ConfigError("train.models", f"mode 'delayed' trains one model; got {tc.models}")
    _choice("train.dataset", tc.dataset, DATASET_NAMES)
    _choice("train.dispatch", tc.dispatch, DISPATCH)
    if tc.dispatch == "arrival":
        if sc.name not in DISPATCH_AT_ARRIVAL_SCHEMES:
            raise ConfigError("train.dispatch", f"'arrival' needs a scheme whose workers' next "
                                                f"tasks follow their own arrivals "
                                                f"({', '.join(DISPATCH_AT_ARRIVAL_SCHEMES)}); "
                                                f"got scheme {sc.name!r}")
        if not tc.pipeline or tc.mode != "concurrent":
            raise ConfigError("train.dispatch", "'arrival' starts round r+1 early, which needs "
                                                "train.pipeline and mode 'concurrent'")
    _positive("train.eval_every", tc.eval_every, allow_none=True, integer=True)
    if tc.optimizer not in ("sgd", "adam"):
        raise ConfigError("train.optimizer", f"must be one of sgd, adam; got {tc.optimizer!r}")
    if "lr" in tc.optimizer_params:
        raise ConfigError("train.optimizer_params.lr", "set the learning rate with train.lr")

    # inject
    _choice("inject.mode", ic.mode, INJECT_MODES)
    _positive("inject.time_scale", ic.time_scale)
    if ic.seed is not None and ic.seed < 0:
        raise ConfigError("inject.seed", f"must be >= 0, got {ic.seed}")
    if ic.model is not None and ic.trace is not None:
        raise ConfigError("inject.trace", "give either inject.model or inject.trace, not both")
    if ic.params and ic.model is None:
        raise ConfigError("inject.params", "needs inject.model (--inject MODEL)")
    if ic.model is not None:
        from .stragglers import MODELS, make_delay_model
        _choice("inject.model", ic.model, tuple(MODELS))
        try:
            make_delay_model(ic.model, **ic.params)
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError("inject.params", str(exc)) from None
    if ic.trace is not None and not Path(ic.trace).is_file():
        raise ConfigError("inject.trace", f"no such file: {ic.trace}")

    # log: files that cannot be written fail here, before Ray starts
    from .paths import output_dir_problem, output_file_problem, run_log_problem
    for where, value, check in (("log.jsonl", cfg.log.jsonl, output_file_problem),
                                ("log.run_log", cfg.log.run_log, run_log_problem)):
        problem = None if value is None or not paths else check(value)
        if problem is not None:
            raise ConfigError(where, problem)

    # checkpoint
    ck = cfg.checkpoint
    if ck.dir is not None and not ck.dir.strip():
        raise ConfigError("checkpoint.dir", "must be a non-empty path")
    if ck.dir is not None and Path(ck.dir).exists() and not Path(ck.dir).is_dir():
        raise ConfigError("checkpoint.dir", f"{ck.dir} exists and is not a directory")
    if ck.dir is not None and output_dir_problem(ck.dir, writable=False) is not None:
        # (whether it is writable is probed when the run starts: a resumed config may name a
        # directory that has since become read-only and that the run then replaces)
        raise ConfigError("checkpoint.dir", output_dir_problem(ck.dir, writable=False))
    _positive("checkpoint.every", ck.every, integer=True)
    _positive("checkpoint.keep", ck.keep, integer=True)
    if ck.resume is not None:
        if not ck.resume.strip():
            raise ConfigError("checkpoint.resume", "must be a non-empty path")
        if not Path(ck.resume).is_dir():
            raise ConfigError("checkpoint.resume", f"no such checkpoint directory: {ck.resume}")

    # faults
    for k, f in enumerate(cfg.faults):
        if not isinstance(f, Fault):
            raise ConfigError(f"faults[{k}]", f"must be a Fault, got {f!r}")
        if f.round < 0:
            raise ConfigError(f"faults[{k}].round", f"must be >= 0, got {f.round}")
        if not 0 <= f.worker < n:
            raise ConfigError(f"faults[{k}].worker", f"must be in [0, workers={n}), got {f.worker}")
        _choice(f"faults[{k}].kind", f.kind, FAULT_KINDS)


# building configs from dicts, files and overrides (re-exported: callers import them from here)
from .config_io import from_dict as from_dict  # noqa: E402
from .config_io import load_config as load_config  # noqa: E402
from .config_io import parse_faults as parse_faults  # noqa: E402
from .config_io import with_overrides as with_overrides  # noqa: E402
