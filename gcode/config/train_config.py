"""The settings of one live run as a config file lays them out: :class:`TrainConfig`, one
section per table ([scheme], [policy], [cluster], [train], [inject], [log], [checkpoint],
[[faults]]), built from nested dicts (:func:`from_dict`) or dotted overrides
(:func:`with_overrides`) and validated on the way (:func:`gcode.config.rules.validate`).

A key's older spelling (``cluster.worker_cpus`` for ``cluster.cpus_per_worker``, the same in a
checkpoint written before the rename) is read as the setting it names, and an error names the
key as it was written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .registry import SECTIONS, PolicyConfig, SchemeConfig, TrainSection, aliases
from .rules import validate
from .settings import CheckpointConfig, Fault, InjectConfig, LogConfig, ScalingConfig
from .spec import ConfigError, check_type
from .tables import policy_name, scheme_params


@dataclass
class TrainConfig:
    """Every setting of one run, by config-file section."""

    scheme: SchemeConfig = field(default_factory=SchemeConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    cluster: ScalingConfig = field(default_factory=ScalingConfig)
    train: TrainSection = field(default_factory=TrainSection)
    inject: InjectConfig = field(default_factory=InjectConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    faults: tuple[Fault, ...] = ()

    def scheme_params(self) -> dict:
        """Parameters for ``make_scheme``: the scheme's own fields, with small defaults for n."""
        return scheme_params(self.scheme, self.cluster.workers)

    @property
    def policy_name(self) -> str:
        """The policy rounds end with (an unset one: the tuner's pick for auto, else paper)."""
        return policy_name(self.scheme, self.policy)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["faults"] = [dataclasses.asdict(f) for f in self.faults]
        return out

    def replace(self, **overrides: Any) -> TrainConfig:
        """A validated copy with dotted overrides, e.g. ``replace(**{"scheme.B": 2})``."""
        return with_overrides(self, overrides)


# ---- older spellings --------------------------------------------------------------------------
def canonical(data: Mapping[str, Any]) -> tuple[dict, dict[str, str]]:
    """``data`` (nested dicts of a file or a checkpoint) with every key in its current spelling,
    and {current key: key as written} for the keys that were spelled otherwise."""
    out, spelled = dict(data), {}
    for section, table in data.items():
        renames = aliases(section) if section in SECTIONS else {}
        if not renames or not isinstance(table, Mapping):
            continue
        fixed = {}
        for key, value in table.items():
            new = renames.get(key, key)
            if new in fixed or (new != key and new in table):
                raise ConfigError(f"{section}.{key}", f"is {section}.{new} under an older name; "
                                                      f"give it once")
            fixed[new] = value
            if new != key:
                spelled[f"{section}.{new}"] = f"{section}.{key}"
        out[section] = fixed
    return out, spelled


@contextlib.contextmanager
def as_written(spelled: Mapping[str, str]):
    """ConfigErrors raised inside name a key as the user wrote it."""
    try:
        yield
    except ConfigError as exc:
        for new, old in spelled.items():
            if exc.field == new or exc.field.startswith((new + ".", new + "[")):
                raise exc.renamed(old + exc.field[len(new):]) from None
        raise


# ---- building ---------------------------------------------------------------------------------
def _section(name: str, cls, data: Any):
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(name, f"must be a table/mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in valid:
            raise ConfigError(f"{name}.{key}", f"unknown field; valid fields of [{name}]: "
                                               f"{', '.join(valid)}")
        kwargs[key] = check_type(f"{name}.{key}", value, hints[key])
    return cls(**kwargs)


def _round_key(key: Any) -> int:
    """A fault round given as a mapping key: an int, or a string of decimal digits (TOML keys are
    strings). Anything else (``true``, ``"1_0"``, ``" 3"``, ``"1e1"``) is refused, not coerced."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    raise ConfigError(f"faults.{key}", f"round key must be a decimal integer, got {key!r}")


def parse_faults(value: Any) -> tuple[Fault, ...]:
    """Faults as a list of {round, worker, kind} tables, or a mapping {round: (worker, kind)} or
    {round: [(worker, kind), ...]}. Round keys may be strings (TOML/YAML)."""
    if value is None:
        return ()
    items: list[tuple[Any, Any, Any]] = []
    names = [f.name for f in dataclasses.fields(Fault)]
    if isinstance(value, Mapping):
        for rnd, spec in value.items():
            specs = spec if (isinstance(spec, (list, tuple)) and spec
                             and isinstance(spec[0], (list, tuple))) else [spec]
            for one in specs:
                if not isinstance(one, (list, tuple)) or len(one) != 2:
                    raise ConfigError(f"faults.{rnd}", f"must be (worker, kind), got {one!r}")
                items.append((_round_key(rnd), one[0], one[1]))
    elif isinstance(value, (list, tuple)):
        for k, one in enumerate(value):
            if isinstance(one, Fault):
                items.append((one.round, one.worker, one.kind))
                continue
            if not isinstance(one, Mapping):
                raise ConfigError(f"faults[{k}]", f"must be a table {{round, worker, kind}}, got {one!r}")
            unknown = sorted(set(one) - set(names))
            if unknown:
                raise ConfigError(f"faults[{k}].{unknown[0]}", f"unknown field; valid: {', '.join(names)}")
            missing = [f for f in names if f not in one]
            if missing:
                raise ConfigError(f"faults[{k}].{missing[0]}", "is required")
            items.append(tuple(one[f] for f in names))
    else:
        raise ConfigError("faults", f"must be a list of tables or a mapping, got {value!r}")
    hints = typing.get_type_hints(Fault)
    out = [Fault(*(check_type(f"faults[{k}].{f}", v, hints[f]) for f, v in zip(names, item)))
           for k, item in enumerate(items)]
    return tuple(sorted(out, key=lambda f: (f.round, f.worker)))


def from_dict(data: Mapping[str, Any] | None, paths: bool = True) -> TrainConfig:
    """Build and validate a TrainConfig from nested dicts (a parsed TOML/YAML file or a
    checkpoint's config); ``paths`` as in :func:`validate`."""
    data, spelled = canonical(data or {})
    unknown = sorted(set(data) - set(SECTIONS) - {"faults"})
    if unknown:
        raise ConfigError(unknown[0], f"unknown section; valid: {', '.join([*SECTIONS, 'faults'])}")
    with as_written(spelled):
        kwargs = {name: _section(name, cls, data.get(name)) for name, cls in SECTIONS.items()}
        cfg = TrainConfig(**kwargs, faults=parse_faults(data.get("faults")))
        validate(cfg, paths)
    return cfg


def with_overrides(cfg: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """Copy of ``cfg`` with dotted-key overrides (``"cluster.workers": 8``), validated."""
    sections = {name: dataclasses.replace(getattr(cfg, name)) for name in SECTIONS}
    faults = cfg.faults
    spelled = {}
    for key, value in overrides.items():
        if key == "faults":
            faults = parse_faults(value)
            continue
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise ConfigError(key, f"unknown field; use section.field with a section among "
                                   f"{', '.join(SECTIONS)}")
        cls = SECTIONS[section]
        name = aliases(section).get(name, name)
        hints = typing.get_type_hints(cls)
        if name not in hints:
            valid = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(key, f"unknown field; valid fields of [{section}]: {valid}")
        if f"{section}.{name}" != key:
            spelled[f"{section}.{name}"] = key
        with as_written(spelled):
            setattr(sections[section], name, check_type(key, value, hints[name]))
    out = TrainConfig(**sections, faults=faults)
    with as_written(spelled):
        validate(out)
    return out


__all__ = ["TrainConfig", "as_written", "canonical", "from_dict", "parse_faults", "with_overrides"]
