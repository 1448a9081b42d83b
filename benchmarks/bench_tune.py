"""Time ``gcode tune`` (the full vectorized grid search) against a per-round reference loop.

    python benchmarks/bench_tune.py [--trace PATH] [--jobs J] [--repeats K] [--out results]

Same as ``gcode bench sim``; writes bench_sim.json, bench_sim.md and bench_sim.png under --out.
"""

import sys

from gcode.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "sim", *sys.argv[1:]]))
