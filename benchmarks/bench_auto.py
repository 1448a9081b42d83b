"""Same as ``gcode bench auto``: writes bench_auto.json, bench_auto.md and PNG plots under --out.

    python benchmarks/bench_auto.py --help
"""

import sys

from gcode.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "auto", *sys.argv[1:]]))
