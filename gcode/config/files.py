"""Reading a config file (.toml, .yaml, .yml) into a validated TrainConfig.

A YAML file means what the same file in TOML means. PyYAML reads YAML 1.1, where plain scalars
mean surprising things: ``1:30`` is 90 (base 60), ``010`` is 8 (octal), ``on``/``yes`` are
true, and a key given twice keeps its last value. Here plain scalars are read as YAML 1.2's
core schema (TOML's numbers: decimal, ``0x``/``0o``/``0b``, floats with an exponent; only
``true``/``false`` are booleans), and what would read differently under YAML 1.1 or that TOML
refuses (base-60 numbers, a leading zero, a key given twice) is refused with one line naming
the file, the line and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from .spec import ConfigError
from .train_config import TrainConfig, from_dict

#: YAML 1.2 core schema, with TOML's binary integers and digit separators
_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*(_[0-9]+)*)$|^0x[0-9a-fA-F_]+$|^0o[0-7_]+$|^0b[01_]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"
                    r"|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")
_AMBIGUOUS = {
    "a base-60 number": re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$"),
    "a number with a leading zero": re.compile(r"^[-+]?0[0-9_]+$"),
}


def _loader():
    import yaml

    class TomlLikeLoader(yaml.SafeLoader):
        """Plain scalars read as YAML 1.2's core schema (see the module docstring)."""

    TomlLikeLoader.yaml_implicit_resolvers = {}
    resolve = TomlLikeLoader.add_implicit_resolver
    resolve("tag:yaml.org,2002:null", re.compile(r"^(~|null|Null|NULL|)$"), ["~", "n", "N", ""])
    resolve("tag:yaml.org,2002:bool", re.compile(r"^(true|True|TRUE|false|False|FALSE)$"),
            list("tTfF"))
    resolve("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
    resolve("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
    resolve("tag:yaml.org,2002:merge", re.compile(r"^<<$"), ["<"])

    def construct_int(loader, node):
        text = loader.construct_scalar(node).replace("_", "")
        return int(text, 0) if text[:2].lower() in ("0x", "0o", "0b") else int(text)

    TomlLikeLoader.add_constructor("tag:yaml.org,2002:int", construct_int)
    return TomlLikeLoader


def _like_toml(root, name: str) -> None:
    """ValueError naming the file, line and key for a key given twice in one mapping or a plain
    scalar that YAML 1.1 and TOML would read differently."""
    import yaml
    seen: set[int] = set()
    stack = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        where = f"{name}: line {node.start_mark.line + 1}: {path or 'the top level'}"
        if isinstance(node, yaml.ScalarNode) and node.style is None:
            for what, pattern in _AMBIGUOUS.items():
                if pattern.match(node.value):
                    raise ValueError(f"{where}: {node.value} is {what}, which YAML 1.1 reads as a "
                                     f"number and TOML refuses; write the number you mean, or "
                                     f"quote it for text")
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{k}]") for k, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge":
                    continue
                text = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
                if text in keys:
                    raise ValueError(f"{name}: line {key.start_mark.line + 1}: "
                                     f"{path + '.' if path else ''}{text} is given twice (YAML "
                                     f"would keep the last, TOML refuses it); give it once")
                keys.add(text)
                stack.append((value, f"{path}.{text}" if path else text))


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a .toml, .yaml or .yml file into a validated TrainConfig. The file is read with the
    bounds of :mod:`gcode.limits` (size, nesting, YAML alias expansion) before it is parsed."""
    from .. import limits
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config", f"no such file: {p}")
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError("config", f"{p}: unknown extension {suffix!r}; use .toml, .yaml or .yml")
    try:
        text = limits.read_text(p, limits.MAX_CONFIG_BYTES, "config file")
        if suffix == ".toml":
            data = limits.loads_toml(text, str(p))
        else:
            data = limits.loads_yaml(text, str(p), _loader(), check=_like_toml)
    except ValueError as exc:
        raise ConfigError("config", str(exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("config", f"{p}: top level must be a table of sections")
    return from_dict(data)


__all__ = ["load_config"]
