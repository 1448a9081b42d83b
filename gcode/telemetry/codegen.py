"""Generate the protobuf/gRPC Python code for proto/gcode/v1/*.proto.

    python -m gcode.telemetry.codegen            # regenerate gcode/telemetry/_proto
    python -m gcode.telemetry.codegen --check    # exit 1 when the committed code is stale
    python -m gcode.telemetry.codegen --out DIR  # generate into DIR instead

It runs grpcio-tools' bundled protoc, then rewrites the generated absolute imports
(``from gcode.v1 import run_pb2``, which would collide with the ``gcode`` package itself) into
relative ones, and adds the package ``__init__.py`` files. The output is a pure function of the
.proto files and the grpcio-tools version, so CI regenerates it and compares bytes
(tests/test_telemetry_codegen.py). Use the grpcio-tools version pinned in pyproject's dev extra.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]
PROTO_ROOT = REPO_ROOT / "proto"
OUT_DIR = PACKAGE_DIR / "_proto"
PROTO_FILES = ("gcode/v1/run.proto", "gcode/v1/monitor.proto")

_INIT_TEXT = {
    "": '"""Generated protobuf and gRPC code for proto/; regenerate with '
        '`python -m gcode.telemetry.codegen`."""\n',
    "gcode": "",
    "gcode/v1": "",
}
_IMPORT = re.compile(r"^from gcode\.v1 import (\w+_pb2) as (\w+)$", re.MULTILINE)


def grpc_tools_version() -> str:
    from importlib.metadata import version
    return version("grpcio-tools")


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Write the generated package into ``out_dir`` (replacing it); returns the files written."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("code generation needs grpcio-tools: pip install -e '.[dev]'") from exc
    import grpc_tools
    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *PROTO_FILES]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit status {rc}: {' '.join(args[1:])}")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        written = []
        for rel, text in _INIT_TEXT.items():
            path = out_dir / rel / "__init__.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
        for src in sorted(Path(tmp).rglob("*")):
            if not src.is_file():
                continue
            text = _IMPORT.sub(r"from . import \1 as \2", src.read_text(encoding="utf-8"))
            dest = out_dir / src.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
            written.append(dest)
    return sorted(written)


def diff(generated: Path, committed: Path) -> list[str]:
    """Relative paths that differ between two generated trees (missing, extra or changed)."""
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts}
    a, b = files(generated), files(committed) if committed.exists() else {}
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gcode.telemetry.codegen",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output dir (default {OUT_DIR})")
    parser.add_argument("--check", action="store_true",
                        help="generate into a temporary dir and compare with --out; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            stale = diff(Path(tmp), args.out)
        if stale:
            print(f"generated code in {args.out} is stale (grpcio-tools {grpc_tools_version()}): "
                  f"{', '.join(stale)}; run python -m gcode.telemetry.codegen", file=sys.stderr)
            return 1
        print(f"{args.out} is in sync with {PROTO_ROOT}")
        return 0
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
