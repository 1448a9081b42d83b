"""``gcode.fit``'s configs (coding, scaling, run) to and from a :class:`TrainConfig`, by the
spellings each setting declares (:mod:`gcode.config.registry`); errors name the field as
``gcode.fit`` spells it (``coding.B: must be >= 1, got 0``)."""

from __future__ import annotations

import dataclasses
import re

from .registry import SECTIONS, SETTINGS, aliases
from .rules import validate
from .settings import (
    CheckpointConfig,
    CodingConfig,
    InjectConfig,
    LogConfig,
    PresetConfig,
    RunConfig,
    ScalingConfig,
)
from .spec import ConfigError, check_type
from .spelling import speaking
from .train_config import TrainConfig

#: nested configs of RunConfig -> their section; None stands for the config's defaults
NESTED = {"inject": ("inject", InjectConfig), "checkpoint": ("checkpoint", CheckpointConfig),
          "logs": ("log", LogConfig)}


def public_field(file_key: str) -> str:
    """``scheme.B`` -> ``coding.B``: a field of a config file as ``gcode.fit`` names it (the key
    may go on into a dict: ``train.optimizer_params.lr`` -> ``run.tags.optimizer_params.lr``;
    an older key names the setting it is: ``cluster.worker_cpus`` -> ``scaling.cpus_per_worker``)."""
    section, _, key = file_key.partition(".")
    head, dot, rest = key.partition(".")
    if section in SECTIONS and head in aliases(section):
        file_key = f"{section}.{aliases(section)[head]}{dot}{rest}"
    for s in SETTINGS:
        if s.file and (file_key == s.file or file_key.startswith(s.file + ".")):
            return s.api + file_key[len(s.file):]
    if file_key.startswith("faults"):
        return "run." + file_key
    section, _, rest = file_key.partition(".")
    renamed = {"inject": "run.inject", "log": "run.logs", "checkpoint": "run.checkpoint",
               "train": "run.tags", "cluster": "scaling"}.get(section)
    return f"{renamed}.{rest}".rstrip(".") if renamed else file_key


#: a config file's key inside a message (not inside a path such as runs/log.jsonl)
_KEY = re.compile(rf"(?<![\w/.-])((?:{'|'.join(SECTIONS)})\.[A-Za-z_]+)")


def in_public_words(exc: ConfigError) -> ConfigError:
    """The error with its field, and the settings its message names, as ``gcode.fit`` spells
    them (``train.pipeline`` -> ``run.pipeline``)."""
    return ConfigError(public_field(exc.field), _KEY.sub(lambda m: public_field(m[1]), exc.message))


def _nested(run: RunConfig, attr: str):
    cls = NESTED[attr][1]
    value = getattr(run, attr)
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise ConfigError(f"run.{attr}", f"must be a gcode.{cls.__name__} or None, got "
                                         f"{type(value).__name__}")
    return dataclasses.replace(value)


def to_train_config(coding: CodingConfig, scaling: ScalingConfig, run: RunConfig) -> TrainConfig:
    """The validated TrainConfig of the three public configs (ConfigError names their field)."""
    parts = {"coding": coding, "scaling": scaling, "run": run}
    for name, cls in (("coding", CodingConfig), ("scaling", ScalingConfig), ("run", RunConfig)):
        if not isinstance(parts[name], cls):
            raise ConfigError(name, f"must be a gcode.{cls.__name__}, got {type(parts[name]).__name__}")
    unknown = sorted(set(run.tags) - {f.name for f in dataclasses.fields(PresetConfig)})
    if unknown:
        valid = ", ".join(f.name for f in dataclasses.fields(PresetConfig))
        raise ConfigError(f"run.tags.{unknown[0]}", f"unknown tag; valid: {valid}")
    values: dict[str, dict] = {"scheme": {}, "policy": {}, "train": {}}
    for s in SETTINGS:
        owner, _, name = s.api.rpartition(".")
        if s.section not in values:
            continue
        if owner == "run.tags":
            if name not in run.tags:
                continue
            value = run.tags[name]
        else:
            value = getattr(parts[owner], name)
        values[s.section][s.key] = check_type(public_field(s.file), value, s.hint)
    try:
        with speaking("python"):
            cfg = TrainConfig(**{k: SECTIONS[k](**v) for k, v in values.items()},
                              cluster=dataclasses.replace(scaling),
                              **{section: _nested(run, attr) for attr, (section, _) in NESTED.items()},
                              faults=tuple(run.faults))
            validate(cfg)
    except ConfigError as exc:
        raise in_public_words(exc) from None
    return cfg


def from_train_config(cfg: TrainConfig) -> tuple[CodingConfig, ScalingConfig, RunConfig]:
    """The inverse of :func:`to_train_config` (``gcode train`` builds a TrainConfig first)."""
    parts: dict[str, dict] = {"coding": {}, "run": {}, "run.tags": {}}
    for s in SETTINGS:
        owner, _, name = s.api.rpartition(".")
        if owner in parts and s.file:
            parts[owner][name] = getattr(getattr(cfg, s.section), s.key)
    run = RunConfig(**parts["run"], faults=cfg.faults, tags=parts["run.tags"],
                    **{attr: dataclasses.replace(getattr(cfg, section))
                       for attr, (section, _) in NESTED.items()})
    return CodingConfig(**parts["coding"]), dataclasses.replace(cfg.cluster), run


__all__ = ["from_train_config", "in_public_words", "public_field", "to_train_config"]
