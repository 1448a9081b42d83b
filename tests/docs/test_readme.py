"""The README stays a page: at most 300 lines, its two commands as promised (CI runs the second),
and one line in its command table for every gcode subcommand."""

import argparse
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
MAIN_JOB = ("python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e . && "
            ".venv/bin/gcode simulate")


def bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.DOTALL)]


def test_the_readme_fits_on_a_page():
    assert len(README.splitlines()) <= 300


def test_the_two_commands_and_ci_runs_the_second():
    blocks = bash_blocks(README)
    assert blocks[0] == MAIN_JOB
    test_command = blocks[1]
    assert "pytest" in test_command and "\n" not in test_command
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci, ".ci/run must run the README's test command"


def test_the_command_table_has_every_subcommand():
    from gcode.cli import build_parser
    names = []

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    leaf = not any(isinstance(a, argparse._SubParsersAction) for a in child._actions)
                    if leaf:
                        names.append(f"{prefix} {sub}")
                    walk(child, f"{prefix} {sub}")
    walk(build_parser(), "gcode")
    rows = re.findall(r"^\| `(gcode [a-z -]+?)` \|", README, re.MULTILINE)
    assert sorted(rows) == sorted(names), set(rows) ^ set(names)
