"""Building a :class:`~gcode.config.TrainConfig` from nested dicts, TOML/YAML files and dotted
overrides. Every path ends in :func:`gcode.config_checks.validate`; errors name the dotted field."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import SECTIONS, ConfigError, Fault, TrainConfig
from .config_checks import check_type, type_hints, validate


def _section_from_dict(name: str, cls, data: Any):
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(name, f"must be a table/mapping, got {data!r}")
    hints = type_hints(cls)
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
            unknown = sorted(set(one) - {"round", "worker", "kind"})
            if unknown:
                raise ConfigError(f"faults[{k}].{unknown[0]}", "unknown field; valid: round, worker, kind")
            missing = [f for f in ("round", "worker", "kind") if f not in one]
            if missing:
                raise ConfigError(f"faults[{k}].{missing[0]}", "is required")
            items.append((one["round"], one["worker"], one["kind"]))
    else:
        raise ConfigError("faults", f"must be a list of tables or a mapping, got {value!r}")
    out = []
    for k, (rnd, worker, kind) in enumerate(items):
        where = f"faults[{k}]"
        check_type(f"{where}.round", rnd, int)
        check_type(f"{where}.worker", worker, int)
        check_type(f"{where}.kind", kind, str)
        out.append(Fault(rnd, worker, kind))
    return tuple(sorted(out, key=lambda f: (f.round, f.worker)))


def from_dict(data: Mapping[str, Any] | None, paths: bool = True) -> TrainConfig:
    """Build and validate a TrainConfig from nested dicts (a parsed TOML/YAML file);
    ``paths`` as in :func:`validate`."""
    data = dict(data or {})
    unknown = sorted(set(data) - set(SECTIONS) - {"faults"})
    if unknown:
        raise ConfigError(unknown[0], f"unknown section; valid: {', '.join([*SECTIONS, 'faults'])}")
    kwargs = {name: _section_from_dict(name, cls, data.get(name)) for name, cls in SECTIONS.items()}
    cfg = TrainConfig(**kwargs, faults=parse_faults(data.get("faults")))
    validate(cfg, paths)
    return cfg


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a .toml, .yaml or .yml file into a validated TrainConfig. The file is read with the
    bounds of :mod:`gcode.limits` (size, nesting, YAML alias expansion) before it is parsed."""
    from . import limits
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config", f"no such file: {p}")
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError("config", f"{p}: unknown extension {suffix!r}; use .toml, .yaml or .yml")
    try:
        text = limits.read_text(p, limits.MAX_CONFIG_BYTES, "config file")
        data = limits.loads_toml(text, str(p)) if suffix == ".toml" else limits.loads_yaml(text, str(p))
    except ValueError as exc:
        raise ConfigError("config", str(exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("config", f"{p}: top level must be a table of sections")
    return from_dict(data)


def with_overrides(cfg: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """Copy of ``cfg`` with dotted-key overrides (``"cluster.workers": 8``), validated."""
    sections = {name: dataclasses.replace(getattr(cfg, name)) for name in SECTIONS}
    faults = cfg.faults
    for key, value in overrides.items():
        if key == "faults":
            faults = parse_faults(value)
            continue
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise ConfigError(key, f"unknown field; use section.field with a section among "
                                   f"{', '.join(SECTIONS)}")
        cls = SECTIONS[section]
        hints = type_hints(cls)
        if name not in hints:
            valid = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(key, f"unknown field; valid fields of [{section}]: {valid}")
        setattr(sections[section], name, check_type(key, value, hints[name]))
    out = TrainConfig(**sections, faults=faults)
    validate(out)
    return out
