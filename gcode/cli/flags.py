"""Command-line flags derived from the settings' declarations (:mod:`gcode.config.settings`).

A setting's flag, help text, metavar, default and older spellings come from its declaration;
a command may give it another default or help (``gcode simulate``'s ``--batch-size`` defaults
to the paper's 4096). The value is parsed by :class:`SettingFlag`:

* always its form: a whole number, a finite number, ``KEY=VALUE``, one of the choices;
* with ``checked``, also its bounds (``argument --mu: must be a positive finite number``).
  ``gcode train`` leaves the bounds to :func:`gcode.config.validate`, which names the config
  field (``policy.mu: ...``) whether the value came from a file or a flag.

An error names the flag as it was typed (``--time-scale``, not ``--inject-time-scale``).
Every flag's destination is the setting's path in ``gcode.fit`` (``coding.B``); :func:`given`
reads them back.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from ..config import BY_API
from ..config.spec import Lazy, bound_problem, choice_problem, choices_of
from . import types

SUPPRESS = argparse.SUPPRESS


def _static_choices(setting) -> tuple[str, ...] | None:
    """Choices known without importing torch (heavy ones are listed when help is printed)."""
    choices = setting.spec.choices
    if isinstance(choices, Lazy) and choices.heavy:
        return None
    return choices_of(setting.spec)


class SettingFlag(argparse.Action):
    """Stores one setting's value (a dict setting: appends KEY=VALUE pairs)."""

    def __init__(self, option_strings, dest, setting=None, checked=False, choices=None, **kw):
        super().__init__(option_strings, dest, **kw)
        self.setting, self.checked, self.allowed = setting, checked, choices

    def convert(self, text: str) -> Any:
        kind, spec = self.setting.kind, self.setting.spec
        if kind is dict:
            key, sep, raw = text.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"expected KEY=VALUE, got {text!r}")
            return key.strip(), types.scalar(raw.strip())
        if kind in (int, float):
            try:
                value = types.whole(text) if kind is int else types.number(text)
            except argparse.ArgumentTypeError as exc:
                raise ValueError(str(exc)) from None
            problem = bound_problem(value, spec) if self.checked else None
            if problem:
                raise ValueError(problem)
            return value
        problem = choice_problem(text, self.allowed) if self.allowed is not None else None
        if problem:
            raise ValueError(problem)
        return text

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            value = self.convert(values)
        except ValueError as exc:
            named = SimpleNamespace(option_strings=[option_string], metavar=None, dest=self.dest)
            raise argparse.ArgumentError(named, str(exc)) from None
        if self.setting.kind is dict:
            value = [*(getattr(namespace, self.dest, None) or []), value]
        setattr(namespace, self.dest, value)


def _shown(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def add_setting(group, path: str, *, checked: bool = False, default: Any = SUPPRESS,
                default_text: str | None = None, help: str | None = None,
                choices: tuple[str, ...] | None = None, required: bool = False,
                dest: str | None = None) -> argparse.Action:
    """Add the flag of the setting at ``path`` (``coding.mu``) to ``group``, stored under
    ``dest`` (default: ``path``). ``default``: the command's default (SUPPRESS: the flag is
    absent unless given); ``default_text``, ``help`` and ``choices``: the command's own, where
    they differ from the declaration's."""
    s = BY_API[path]
    spec = s.spec
    text = (help or spec.help).replace("%", "%%")
    shown = default_text or spec.default_text
    if shown is None and s.kind is not dict:
        value = s.default() if default is SUPPRESS else default
        shown = None if value is None or s.kind is bool else _shown(value)
    if shown and s.kind is not bool:
        text += f" (default: {shown})".replace("%", "%%")
    names = [s.flag, *spec.flags]
    if s.kind is bool:
        store = "store_false" if s.default() is True else "store_true"
        return group.add_argument(*names, dest=dest or path, action=store, default=default,
                                  help=text)
    allowed = choices or _static_choices(s)
    metavar = spec.metavar or ("KEY=VALUE" if s.kind is dict else None)
    if metavar is None and allowed:
        metavar = "{" + ",".join(allowed) + "}"
    elif metavar is None:
        metavar = {int: "N", float: "X"}.get(s.kind, s.name.upper())
    action = group.add_argument(*names, dest=dest or path, action=SettingFlag, setting=s, checked=checked,
                                choices=allowed, default=default, metavar=metavar, help=text,
                                required=required)
    if isinstance(spec.choices, Lazy) and spec.choices.heavy:
        action.lazy_choices = spec.choices
    return action


def add_settings(group, paths: Iterable[str], **kw) -> None:
    for path in paths:
        add_setting(group, path, **kw)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """{setting path: value} of the setting flags in ``args`` (absent: not given)."""
    return {k: v for k, v in vars(args).items() if k in BY_API}


class SettingsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Lists the choices of settings whose choices are read from gcode.train (importing torch)
    only when help is printed."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action)
        lazy = getattr(action, "lazy_choices", None)
        return text if lazy is None else f"{text}; one of: {', '.join(lazy())}"


__all__ = ["SUPPRESS", "SettingFlag", "SettingsHelpFormatter", "add_setting", "add_settings",
           "given"]
