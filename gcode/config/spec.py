"""How one setting is declared, and how a value is checked against that declaration.

A setting is a dataclass field whose metadata holds a :class:`Spec` (:func:`setting` builds
both)::

    workers: int = setting(4, "worker actors n", ge=1, le=MAX_WORKERS)

The field's annotation is its type; the Spec holds everything else that the flags, the file
schema, validation and docs/API.md are derived from: help, bounds, choices, where the setting
sits in a config file, and the older spellings of its file key and flag that still work.

Why dataclasses with field metadata and a small checker rather than pydantic: the configs are
plain values that the runtime copies, compares and writes into checkpoints
(``dataclasses.asdict``/``replace``), their error messages are a tested contract
(``coding.B: must be >= 1, got 0`` as the user wrote the field, never coerced: ``"3"`` and
``True`` are not integers), a setting is grouped one way in ``gcode.fit`` (coding, scaling,
run) and another in files ([scheme], [policy], [cluster], [train]) -- a mapping of our own
either way -- and ``import gcode`` stays free of third-party imports. Pydantic would add a
dependency, lax coercion to switch off field by field, and an error translation layer; the
checker here is :func:`check_value`, about sixty lines.

This module imports only the standard library.
"""

from __future__ import annotations

import importlib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A bad config value; the message starts with the field as the user wrote it."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        self.message = message
        super().__init__(f"{field_name}: {message}" if field_name else message)

    def renamed(self, field_name: str) -> ConfigError:
        """The same error naming ``field_name`` (the field as another front end spells it)."""
        return ConfigError(field_name, self.message)


@dataclass(frozen=True)
class Lazy:
    """Choices derived from a registry that lives in a heavier package, read only when a value
    is checked: the keys (or items) of ``module.attr``, then ``extra``. ``heavy``: importing the
    module imports torch, so command lines list these choices in their help text only."""

    module: str
    attr: str
    extra: tuple[str, ...] = ()
    heavy: bool = False

    def __call__(self) -> tuple[str, ...]:
        return (*getattr(importlib.import_module(self.module), self.attr), *self.extra)


Choices = tuple[str, ...] | Lazy


@dataclass(frozen=True)
class Spec:
    """Everything about a setting except its name, type and default."""

    help: str
    section: str | None = None      # file section ([scheme], [cluster], ...); "" = not in files
    key: str | None = None          # its key there when not the field's name (scheme.name)
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    why: str = ""                   # why the upper bound, appended to its message
    choices: Choices | None = None
    aliases: tuple[str, ...] = ()   # earlier names of its file key, still read
    flags: tuple[str, ...] = ()     # earlier spellings of its flag, still accepted
    metavar: str | None = None
    default_text: str | None = None  # the default in words (where None means "computed")
    resume_safe: bool = False       # may differ from a checkpoint's config when resuming


def setting(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field declaring one setting (mutable defaults are copied per instance)."""
    meta = {"spec": Spec(help=help, **spec)}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def spec_of(f) -> Spec | None:
    return f.metadata.get("spec")


def choices_of(spec: Spec) -> tuple[str, ...] | None:
    if spec.choices is None:
        return None
    return spec.choices() if isinstance(spec.choices, Lazy) else spec.choices


# ---- checking one value ------------------------------------------------------------------
def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def optional(hint: Any) -> bool:
    return _is_union(hint) and type(None) in typing.get_args(hint)


def base_type(hint: Any) -> Any:
    """``int | None`` -> int; ``dict[str, Any]`` -> dict; ``tuple[Fault, ...]`` -> tuple."""
    if _is_union(hint):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def check_type(where: str, value: Any, hint: Any) -> Any:
    """``value`` if it has the annotated type (an int is taken for a float, as a float); else
    ConfigError. Nothing is coerced: ``"3"`` is not an integer and ``True`` is not a number."""
    if value is None and optional(hint):
        return None
    kind = base_type(hint)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(where, f"must be true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, f"must be an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(where, f"must be a number, got {value!r}")
        return float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(where, f"must be a string, got {value!r}")
    elif kind is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"must be a table/mapping, got {value!r}")
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ConfigError(where, f"keys must be strings, got {bad[0]!r}")
        return dict(value)
    return value


def number(x: float) -> str:
    """A bound or value as a message shows it: integers in full, other numbers short."""
    return str(x) if isinstance(x, int) else f"{x:g}"


def bound_problem(value: float, spec: Spec) -> str | None:
    """What is wrong with a number under the spec's bounds, or None."""
    finite = isinstance(value, int) or math.isfinite(value)
    if spec.gt == 0 and not (finite and value > 0):
        return f"must be a positive finite number, got {value}"
    if spec.gt is not None and not (finite and value > spec.gt):
        return f"must be > {number(spec.gt)}, got {value}"
    if spec.ge is not None and not (finite and value >= spec.ge):
        return f"must be >= {number(spec.ge)}, got {value}"
    if spec.le is not None and not (finite and value <= spec.le):
        why = f" ({spec.why})" if spec.why else ""
        return f"must be <= {number(spec.le)}{why}, got {number(value)}"
    return None


def choice_problem(value: Any, choices: tuple[str, ...]) -> str | None:
    if value in choices:
        return None
    return f"must be one of {', '.join(choices)}; got {value!r}"


def check_value(where: str, value: Any, hint: Any, spec: Spec | None) -> Any:
    """The value, checked against its type, bounds and choices (ConfigError naming ``where``)."""
    value = check_type(where, value, hint)
    if value is None or spec is None:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        problem = bound_problem(value, spec)
        if problem:
            raise ConfigError(where, problem)
    choices = choices_of(spec)
    if choices is not None:
        problem = choice_problem(value, choices)
        if problem:
            raise ConfigError(where, problem)
    return value


__all__ = ["Choices", "ConfigError", "Lazy", "Spec", "base_type", "bound_problem", "check_type",
           "check_value", "choice_problem", "choices_of", "number", "optional", "setting", "spec_of"]
