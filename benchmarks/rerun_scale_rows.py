"""Rerun some rows of ``gcode bench scale`` (default: auto, with uncoded alongside for a paired
ratio) at the JSON's own n and rounds, and put them in place of the old rows of
``benchmarks/results/bench_scale.json`` (``rows_rerun`` records which, when and the load
average). For a change that moves only those rows' cost, such as the auto tuner's.

    python benchmarks/rerun_scale_rows.py [--labels uncoded auto] [--why TEXT] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path

from gcode.bench.scale import markdown_table, plot, run_scale_bench
from gcode.jsonout import dumps
from gcode.paths import write_atomic

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", nargs="+", default=["uncoded", "auto"])
    parser.add_argument("--why", default="the auto tuner changed")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    path = args.out / "bench_scale.json"
    old = json.loads(path.read_text(encoding="utf-8"))
    book_rounds = old["rows"][0].get("book_rounds", 40)
    load = os.getloadavg()[0]
    new = run_scale_bench(tuple(old["ns"]), old["rounds"], book_rounds, labels=tuple(args.labels))
    load = max(load, os.getloadavg()[0])
    fresh = {(r["n"], r["label"]): r for r in new["rows"]}
    old["rows"] = [fresh.get((r["n"], r["label"]), r) for r in old["rows"]]
    old["rows_rerun"] = {"labels": list(args.labels), "date": datetime.date.today().isoformat(),
                         "load_average": load, "why": args.why}
    write_atomic(path, dumps(old, indent=2))  # the environment stays the other rows' own
    env = old["environment"]
    write_atomic(args.out / "bench_scale.md", f"{markdown_table(old)}\n\nMeasured on {env['machine']} "
                 f"{env['system']}, {env['cpus']} CPUs, Python {env['python']}, {env['date']}.\n")
    plot(old, args.out)
    print(f"rerun {', '.join(args.labels)} at n = {old['ns']}; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
