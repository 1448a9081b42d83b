"""Every setting of gcode, declared once (:mod:`gcode.config.settings`), and what is derived from
the declarations: the config-file form :class:`TrainConfig` and its validation, the configs of
``gcode.fit``, the command-line flags (:mod:`gcode.cli.flags`) and docs/API.md
(:mod:`gcode.config.docs`).

A config comes from defaults, a TOML or YAML file (one table per section), command-line flags,
or ``gcode.fit``'s configs; every path ends in :func:`validate`, which raises
:class:`ConfigError` naming the field as the user wrote it (``scheme.B: must be >= 1, got 0``
from a file or a flag, ``coding.B: ...`` from ``gcode.fit``). Example TOML::

    [scheme]
    name = "msgc"        # the scheme (gcode.fit: CodingConfig(scheme=...))
    B = 1
    W = 2
    lam = 2
    jobs = 40
    [policy]
    name = "paper"
    mu = 1.0
    [cluster]
    workers = 4
    [train]
    model = "mlp"
    dataset = "digits"
    lr = 0.01
    [inject]             # optional straggler injection
    model = "bursty"
    params = { B = 1, W = 2, lam = 2, base = 0.02, slowdown = 5.0 }
    [checkpoint]         # optional: checkpoint every K rounds and on a stop request
    dir = "runs/ckpt"
    every = 10
    [[faults]]           # optional fault injection (tests)
    round = 3
    worker = 1
    kind = "raise"

This package imports neither Ray nor torch at import time.
"""

from .address import endpoint
from .files import load_config
from .public import from_train_config, in_public_words, public_field, to_train_config
from .registry import (
    BY_API,
    BY_FILE,
    SECTIONS,
    SETTINGS,
    ClusterConfig,
    PolicyConfig,
    SchemeConfig,
    Setting,
    TrainSection,
    resume_safe_keys,
)
from .rules import validate
from .settings import (
    DEVICES,
    FAULT_KINDS,
    MAX_DELAY_TABLE_BYTES,
    MAX_JOBS,
    MAX_WORKERS,
    CheckpointConfig,
    CodingConfig,
    Fault,
    InjectConfig,
    LogConfig,
    PresetConfig,
    RunConfig,
    ScalingConfig,
)
from .spec import ConfigError
from .spelling import how_to_set, speaking
from .tables import arrival_schemes, scheme_params
from .train_config import TrainConfig, canonical, from_dict, parse_faults, with_overrides

__all__ = [
    "BY_API", "BY_FILE", "DEVICES", "FAULT_KINDS", "MAX_DELAY_TABLE_BYTES", "MAX_JOBS",
    "MAX_WORKERS", "SECTIONS", "SETTINGS", "CheckpointConfig", "ClusterConfig", "CodingConfig",
    "ConfigError", "Fault", "InjectConfig", "LogConfig", "PolicyConfig", "PresetConfig",
    "RunConfig", "ScalingConfig", "SchemeConfig", "Setting", "TrainConfig", "TrainSection",
    "arrival_schemes", "canonical", "endpoint", "from_dict", "from_train_config", "how_to_set",
    "in_public_words", "load_config", "parse_faults", "public_field", "resume_safe_keys", "scheme_params",
    "speaking", "to_train_config", "validate", "with_overrides",
]
