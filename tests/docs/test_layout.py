"""The tests mirror the package: tests/<path>/ holds the tests of gcode/<path>/, tests/ itself only
the tests of gcode's top-level modules; CI lints the whole repository."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
#: folders of tests that belong to no package: repository checks, fixtures, shared helpers
OWN_FOLDERS = {"docs", "data", "support"}
#: tests at the root for no module of gcode/: README.md names tests/test_examples.py
ROOT_EXTRAS = {"conftest.py", "test_examples.py"}


def test_every_test_folder_is_a_package_of_gcode():
    stray = []
    for folder in sorted(p for p in TESTS.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        rel = folder.relative_to(TESTS)
        if rel.parts[0] in OWN_FOLDERS:
            continue
        if not (REPO / "gcode" / rel / "__init__.py").is_file():
            stray.append(f"tests/{rel.as_posix()}")
    assert not stray, f"no gcode package for {stray}: put tests in the folder of the package they test"


def test_the_root_holds_only_tests_of_top_level_modules():
    stray = [p.name for p in sorted(TESTS.glob("*.py"))
             if p.name not in ROOT_EXTRAS
             and not (p.name.startswith("test_") and (REPO / "gcode" / p.name[5:]).is_file())]
    assert not stray, (f"tests/{stray}: no gcode/ module of that name; move them to the folder of "
                       "the package they test (tests/codes, tests/sim, tests/runtime/loop, ...)")


def test_ci_lints_the_whole_repository():
    assert "ruff check ." in (REPO / ".ci" / "run").read_text(encoding="utf-8")
