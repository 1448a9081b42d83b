"""Every scheme on each public trace, hindsight and out-of-sample: ``gcode bench trace``.

    python benchmarks/bench_trace.py [--traces DIR] [--out results] [--json]
"""

import sys

from gcode.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "trace", *sys.argv[1:]]))
