"""The simulator's figures on the published Lambda traces, as JSON: what ``gcode simulate`` and
``gcode tune`` print for docs/RESULTS.md's simulated tables.

    python benchmarks/sim_lambda.py [--out benchmarks/results]

Runs each command below through the installed ``gcode`` CLI (so the figures are what a user
gets) and writes ``sim_lambda.json``: ``{"runs": [{"command": ..., "result": ...}], ...}``.
Simulated runtimes are deterministic; the commands take a few seconds in all.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
R20 = "traces/lambda-cnn-w256-r20-canada.csv"

COMMANDS = [
    # every scheme under each round-ending policy and dispatch (the bundled 30-round trace)
    *(f"gcode simulate --policy {p} --dispatch {d} --json"
      for p in ("paper", "partial", "earliest", "gap") for d in ("round", "arrival")),
    f"gcode simulate --trace {R20} --json",
    # figures the tests pin (replay semantics; the authors' cyclic code)
    "gcode simulate --scheme srsgc --B 1 --W 2 --lam 27 --gc-code cyclic --json",
    "gcode simulate --scheme srsgc --B 3 --W 4 --lam 40 --gc-code cyclic --json",
    "gcode simulate --scheme gc --s 11 --gc-code cyclic --json",
    f"gcode simulate --trace {R20} --scheme srsgc --B 2 --W 3 --lam 25 --gc-code cyclic --json",
    # the hindsight grid search, and M-SGC at its best parameters under the earliest policy
    "gcode tune --json",
    f"gcode tune --trace {R20} --json",
    "gcode simulate --scheme msgc --B 1 --W 2 --lam 256 --policy earliest --json",
    f"gcode simulate --trace {R20} --scheme msgc --B 1 --W 2 --lam 256 --policy earliest --json",
]


def run(command: str) -> dict:
    gcode = Path(sys.executable).with_name("gcode")
    argv = [str(gcode), *shlex.split(command)[1:]]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    from gcode.bench.report import machine_info
    from gcode.jsonout import dumps
    runs = [{"command": c, "result": run(c)} for c in COMMANDS]
    path = Path(args.out) / "sim_lambda.json"
    path.write_text(dumps({"runs": runs, "environment": machine_info()}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
