"""Cost per worker-round against n (simulator, coordinator bookkeeping, memory, and
``gcode simulate`` end to end at 10,000 workers): ``gcode bench scale``.

    python benchmarks/bench_scale.py [--quick] [--n N ...] [--out results] [--json]
"""

import sys

from gcode.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "scale", *sys.argv[1:]]))
