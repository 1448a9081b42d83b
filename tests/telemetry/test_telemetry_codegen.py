"""The committed generated code under gcode/telemetry/_proto is exactly what codegen produces."""

import re

import pytest

from gcode.telemetry import codegen

pytest.importorskip("grpc_tools", reason="the in-sync check needs grpcio-tools (the dev extra)")


def test_generated_code_is_in_sync(tmp_path):
    generated = tmp_path / "_proto"
    codegen.generate(generated)
    committed = codegen.OUT_DIR
    header = (committed / "gcode" / "v1" / "monitor_pb2_grpc.py").read_text()
    committed_tools = re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", header).group(1)
    stale = codegen.diff(generated, committed)
    assert not stale, (
        f"gcode/telemetry/_proto is out of sync with proto/ for {stale}. Committed code was made "
        f"by grpcio-tools {committed_tools}, this is {codegen.grpc_tools_version()}; run "
        "`python -m gcode.telemetry.codegen` with the pinned grpcio-tools and commit the result")


def test_generated_imports_are_relative():
    for path in codegen.OUT_DIR.rglob("*.py"):
        text = path.read_text()
        assert "from gcode.v1" not in text and "import gcode.v1" not in text, path


def test_check_mode_reports_stale(tmp_path, capsys):
    out = tmp_path / "_proto"
    codegen.generate(out)
    assert codegen.main(["--check", "--out", str(out)]) == 0
    (out / "gcode" / "v1" / "run_pb2.py").write_text("# edited by hand\n")
    assert codegen.main(["--check", "--out", str(out)]) == 1
    assert "run_pb2.py" in capsys.readouterr().err


def test_protos_declare_versioned_package():
    for rel in codegen.PROTO_FILES:
        text = (codegen.PROTO_ROOT / rel).read_text()
        assert "package gcode.v1;" in text and 'syntax = "proto3";' in text
        # tensors travel as bytes with dtype and shape, never `repeated float` (PLATFORM.md)
        assert not re.search(r"^\s*repeated\s+float\s", text, re.MULTILINE)
