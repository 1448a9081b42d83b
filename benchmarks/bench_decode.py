"""Same as ``gcode bench decode``: writes bench_decode.json, bench_decode.md and PNG plots under --out.

    python benchmarks/bench_decode.py --help
"""

import sys

from gcode.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "decode", *sys.argv[1:]]))
