"""The settings as one list, read off their declarations (:mod:`gcode.config.settings`), and the
config-file sections derived from it.

Each :class:`Setting` knows its three spellings: its path in ``gcode.fit`` (``coding.B``,
``run.inject.time_scale``, ``run.tags.lr``), its key in a config file (``scheme.B``,
``inject.time_scale``, ``train.lr``) and its flag (``--B``, ``--inject-time-scale``, ``--lr``).
A file groups settings by what they configure ([scheme], [policy], [cluster], [train], [inject],
[log], [checkpoint]); ``gcode.fit`` groups them as Ray Train does (coding, scaling, run). The
sections that no declaring class matches one to one (:class:`SchemeConfig`,
:class:`PolicyConfig`, :class:`TrainSection`) are made here from the declarations' fields;
[cluster], [inject], [log] and [checkpoint] are the declaring classes themselves.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass
from typing import Any

from . import settings as S
from .spec import Spec, base_type, spec_of

#: the declaring classes and their place in gcode.fit
OWNERS = ((S.CodingConfig, "coding"), (S.ScalingConfig, "scaling"), (S.PresetConfig, "run.tags"),
          (S.RunConfig, "run"), (S.InjectConfig, "run.inject"),
          (S.CheckpointConfig, "run.checkpoint"), (S.LogConfig, "run.logs"))


@dataclass(frozen=True)
class Setting:
    """One declared setting and its spellings."""

    owner: type
    name: str
    api: str                 # gcode.fit: "scaling.cpus_per_worker"
    file: str | None         # a config file: "cluster.cpus_per_worker" (None: not in files)
    flag: str                # "--cpus-per-worker"
    hint: Any
    field: dataclasses.Field
    spec: Spec

    @property
    def section(self) -> str | None:
        return self.file.partition(".")[0] if self.file else None

    @property
    def key(self) -> str | None:
        return self.file.partition(".")[2] if self.file else None

    def default(self) -> Any:
        f = self.field
        return f.default_factory() if f.default_factory is not MISSING else f.default

    @property
    def kind(self) -> type:
        return base_type(self.hint)


def _flag(prefix: str, name: str, hint: Any, default: Any) -> str:
    word = prefix + name.replace("_", "-")
    if base_type(hint) is dict:
        return "--" + word.removesuffix("s") if word.endswith("params") else "--" + word
    if base_type(hint) is bool and default is True:
        return "--no-" + word
    return "--" + word


def _settings_of(cls: type, api: str) -> list[Setting]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = spec_of(f)
        if spec is None:
            continue  # a nested config, the faults, the tags
        section = cls.__gcode_section__ if spec.section is None else spec.section
        file = f"{section}.{spec.key or f.name}" if section else None
        default = f.default if f.default_factory is MISSING else f.default_factory()
        out.append(Setting(cls, f.name, f"{api}.{f.name}", file,
                           _flag(cls.__gcode_prefix__, f.name, hints[f.name], default),
                           hints[f.name], f, spec))
    return out


SETTINGS: tuple[Setting, ...] = tuple(s for cls, api in OWNERS for s in _settings_of(cls, api))
BY_API = {s.api: s for s in SETTINGS}
BY_FILE = {s.file: s for s in SETTINGS if s.file}


def _section_class(name: str, section: str) -> type:
    """A dataclass of the settings filed under ``section``, named by their file keys."""
    fields = []
    for s in SETTINGS:
        if s.section == section:
            f = s.field
            extra = ({"default_factory": f.default_factory} if f.default_factory is not MISSING
                     else {"default": f.default})
            fields.append((s.key, s.hint, dataclasses.field(metadata=f.metadata, **extra)))
    cls = dataclasses.make_dataclass(name, fields)
    cls.__module__ = __name__
    cls.__doc__ = f"The [{section}] section of a config file (derived from the declarations)."
    return cls


SchemeConfig = _section_class("SchemeConfig", "scheme")
PolicyConfig = _section_class("PolicyConfig", "policy")
TrainSection = _section_class("TrainSection", "train")
ClusterConfig = S.ScalingConfig

#: section name -> its class, in the order a file lists them
SECTIONS: dict[str, type] = {"scheme": SchemeConfig, "policy": PolicyConfig,
                             "cluster": S.ScalingConfig, "train": TrainSection,
                             "inject": S.InjectConfig, "log": S.LogConfig,
                             "checkpoint": S.CheckpointConfig}


def aliases(section: str) -> dict[str, str]:
    """Older key -> current key, within one file section."""
    return {old: s.key for s in SETTINGS if s.section == section for old in s.spec.aliases}


def resume_safe_keys() -> tuple[str, ...]:
    """File keys that may differ between a checkpoint's config and the run resuming it."""
    return tuple(s.file for s in SETTINGS if s.file and s.spec.resume_safe)


__all__ = [
    "BY_API",
    "BY_FILE",
    "OWNERS",
    "SECTIONS",
    "SETTINGS",
    "ClusterConfig",
    "PolicyConfig",
    "SchemeConfig",
    "Setting",
    "TrainSection",
    "aliases",
    "resume_safe_keys",
]
