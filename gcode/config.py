"""Typed run configuration for ``gcode train``: small nested dataclasses, validated in one place.

A config comes from defaults, a TOML or YAML file (same layout: one table per section), and/or
command-line flags (``gcode.cli.train``). Every path ends in :func:`validate`
(``gcode.config_checks``), which raises :class:`ConfigError` naming the dotted field
(``scheme.B: must be >= 1, got 0``).

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
from dataclasses import dataclass, field
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
GC_CODES = ("group", "cyclic", "fr")  # gcode.codes.GC_CODE_KINDS; the first is the default
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
    gc_code: str | None = None  # gc / srsgc / msgc / auto: group | cyclic | fr (default group; auto: fr)
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
    defaults = {"s": 1 if n > 1 else 0, "B": 1, "W": 2, "lam": min(2, n), "gc_code": GC_CODES[0]}
    params = {}
    for key in accepted:
        value = getattr(sc, key)
        params[key] = defaults[key] if value is None else value
    return params


# validation and building configs from dicts, files and overrides (re-exported: callers
# import them from here)
from .config_checks import validate as validate  # noqa: E402
from .config_io import from_dict as from_dict  # noqa: E402
from .config_io import load_config as load_config  # noqa: E402
from .config_io import parse_faults as parse_faults  # noqa: E402
from .config_io import with_overrides as with_overrides  # noqa: E402
