"""Same as ``gcode bench live``: writes bench_live.json, bench_live.md and PNG plots under --out.

    python benchmarks/bench_live.py --help
"""

import sys

from gcode.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "live", *sys.argv[1:]]))
