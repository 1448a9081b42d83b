"""Bounded reading of files that users and other processes hand to gcode.

A small file must never cause a large amount of work: every reader here checks a size, a
nesting depth or an expansion count *before* it allocates, and fails with a ValueError whose
message starts with the file's name. The limits are generous for real inputs and stated here,
in one place:

* text configs (TOML, YAML) and checkpoint manifests: at most :data:`MAX_CONFIG_BYTES`;
* trace CSVs: at most :data:`MAX_TRACE_BYTES`;
* JSON, TOML and YAML documents: nested at most :data:`MAX_DEPTH` levels;
* YAML: at most :data:`MAX_YAML_NODES` values after expanding anchors and aliases (a "billion
  laughs" document of a few hundred bytes expands to billions);
* ``.npz`` archives: uncompressed (``ZIP_STORED``) ``.npy`` entries only, each holding exactly
  the bytes its header claims, so memory stays bounded by the file's size (a deflate bomb or a
  header claiming 10^14 values is refused before anything is allocated).

This module imports only the standard library at import time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 1 << 20
MAX_TRACE_BYTES = 1 << 30  # a 1,000-round x 10,000-worker CSV is 70 MB
MAX_DEPTH = 64
MAX_YAML_NODES = 100_000


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def read_bytes(path: str | os.PathLike, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; ValueError naming the
    file when it is missing, not a regular file, larger, or unreadable."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            import stat
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{name}: not a regular file (a {what} must be a file)")
            if st.st_size > limit:
                raise ValueError(f"{name}: {st.st_size} bytes, more than the {_mib(limit)} a "
                                 f"{what} may have")
            data = f.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"{name}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(data) > limit:  # grew while we read it
        raise ValueError(f"{name}: more than the {_mib(limit)} a {what} may have")
    return data


def decode_utf8(data: bytes, name: str) -> str:
    """``data`` as UTF-8 text (a UTF-8 BOM is dropped); ValueError naming the file otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        hint = ""
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            hint = "; it looks like UTF-16: save it as UTF-8"
        raise ValueError(f"{name}: not UTF-8 text (invalid byte at offset {exc.start}){hint}") from None


def read_text(path: str | os.PathLike, limit: int, what: str) -> str:
    """:func:`read_bytes` decoded as UTF-8."""
    return decode_utf8(read_bytes(path, limit, what), os.fspath(path))


def check_depth(value: Any, name: str, limit: int = MAX_DEPTH) -> None:
    """ValueError naming ``name`` when lists/dicts in ``value`` nest deeper than ``limit``
    (iterative: never recurses itself)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            raise ValueError(f"{name}: nested more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)


def loads_json(text: str | bytes, name: str, limit: int = MAX_DEPTH) -> Any:
    """``json.loads`` with the nesting bounded; ValueError naming ``name`` for bad JSON."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"{name}: nested more than {limit} levels deep") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    except ValueError as exc:
        raise ValueError(f"{name}: invalid JSON: {exc}") from None
    check_depth(value, name, limit)
    return value


def loads_toml(text: str, name: str, limit: int = MAX_DEPTH) -> dict:
    import tomllib
    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise ValueError(f"{name}: nested more than {limit} levels deep") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{name}: invalid TOML: {exc}") from None
    check_depth(value, name, limit)
    return value


def _yaml_size(root, name: str, max_nodes: int, limit: int) -> None:
    """Count the values of a composed YAML node graph with aliases expanded, without expanding
    it: a node's size is computed once and reused wherever an alias points at it."""
    import yaml
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            kids = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        else:
            kids = []
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > max_nodes:
                raise ValueError(f"{name}: expands to more than {max_nodes} values (anchors and "
                                 f"aliases that repeat each other: a YAML bomb?)")
            if depth[key] > limit:
                raise ValueError(f"{name}: nested more than {limit} levels deep")
            continue
        if key in size:
            continue
        if key in on_path:
            raise ValueError(f"{name}: an alias refers to a value that contains it (a recursive "
                             f"YAML document)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)


def loads_yaml(text: str, name: str, loader, check=None, max_nodes: int = MAX_YAML_NODES,
               limit: int = MAX_DEPTH) -> Any:
    """One YAML document, safely: no Python objects, bounded expansion and depth. ``loader``: a
    ``yaml.SafeLoader`` subclass (what plain scalars mean); ``check(node, name)``: run on the
    composed node graph, once it is known to be small, before anything is constructed."""
    import yaml
    loader = loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _yaml_size(node, name, max_nodes, limit)
        if check is not None:
            check(node, name)
        return loader.construct_document(node)
    except RecursionError:
        raise ValueError(f"{name}: nested more than {limit} levels deep") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{name}: invalid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


# ---- .npz archives ---------------------------------------------------------------------------
def load_npz(path: str | os.PathLike) -> dict:
    """Every array of an uncompressed ``.npz`` written by ``numpy.lib.format.write_array``
    (``allow_pickle=False``), with memory bounded by the file's size. ValueError naming the file
    and the entry for a compressed entry, an object dtype, or a header that claims more or fewer
    bytes than the entry holds."""
    import zipfile

    import numpy as np
    name = os.fspath(path)
    size = Path(path).stat().st_size
    out: dict = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                where = f"{name}: entry {info.filename!r}"
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ValueError(f"{where} is compressed; checkpoints store arrays "
                                     f"uncompressed (a compressed entry could expand without "
                                     f"bound)")
                if not info.filename.endswith(".npy") or info.file_size > size:
                    raise ValueError(f"{where} is not an .npy array of this archive")
                try:
                    with zf.open(info) as f:
                        shape, fortran, dtype, data = _npy_entry(f, info.file_size)
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                arr = np.frombuffer(data, dtype=dtype)
                arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
                out[info.filename[:-4]] = arr.copy()
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{name}: not a valid .npz archive: {exc}") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{name}: cannot be read: {exc}") from None
    return out


def _npy_entry(f, stored: int):
    """(shape, fortran order, dtype, raw bytes) of one .npy entry, checking that its header
    claims exactly the bytes stored before reading them."""
    from numpy.lib import format as npformat
    version = npformat.read_magic(f)
    readers = {(1, 0): npformat.read_array_header_1_0, (2, 0): npformat.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f"unsupported .npy version {version}")
    shape, fortran, dtype = readers[version](f, max_header_size=10_000)
    if dtype.hasobject:
        raise ValueError("holds Python objects, which need allow_pickle (pickles are never loaded)")
    count = 1
    for dim in shape:
        count *= int(dim)
    body = stored - f.tell()
    if count * dtype.itemsize != body:
        raise ValueError(f"its header claims shape {shape} of {dtype} ({count * dtype.itemsize} "
                         f"bytes) but it holds {body} bytes")
    return shape, fortran, dtype, f.read(body)


__all__ = ["MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_TRACE_BYTES", "MAX_YAML_NODES", "check_depth",
           "decode_utf8", "load_npz", "loads_json", "loads_toml", "loads_yaml", "read_bytes",
           "read_text"]
