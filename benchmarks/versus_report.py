"""Rebuild the markdown tables and PNG plots of `gcode bench versus` JSON results.

    python benchmarks/versus_report.py DIR     # every versus_*.json / bench_versus_*.json in DIR
"""

import json
import sys
from pathlib import Path

from gcode.bench.versus_report import markdown_table, plot


def main(folder: str) -> None:
    for path in sorted(Path(folder).glob("*versus_*.json")):
        result = json.loads(path.read_text())
        table = markdown_table(result)
        path.with_suffix(".md").write_text(table + "\n")
        written = plot(result, path.parent)
        target = path.with_suffix(".png")
        written[0].replace(target)
        print(f"{path.name}: {result.get('best_exact')}\n{table}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results")
