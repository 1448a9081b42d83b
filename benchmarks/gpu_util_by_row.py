"""GPU utilisation per row of a `gcode bench versus` run, from `nvidia-smi` samples.

The device scripts sample every GPU every 200 ms into gpu_util.csv
(``nvidia-smi --query-gpu=timestamp,index,utilization.gpu --format=csv,noheader -lms 200``,
timestamps in UTC). Each row of the bench's JSON says when it ended (``ended_unix``) and how
long its timed part took (``wall_s``); the window [ended − wall_s, ended] is that timed part,
late by the row's teardown (a fraction of a second). Prints, per row, each GPU's mean
utilisation over that window and the number of samples.

    python benchmarks/gpu_util_by_row.py RESULT.json gpu_util.csv [--json OUT]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
from pathlib import Path


def read_samples(path: Path) -> list[tuple[float, int, float]]:
    """(Unix seconds, GPU index, utilisation %) of each line of an nvidia-smi CSV."""
    samples = []
    with path.open() as f:
        for lineno, fields in enumerate(csv.reader(f), 1):
            if len(fields) != 3:
                raise SystemExit(f"{path}:{lineno}: expected timestamp, index, utilization")
            try:
                stamp = datetime.datetime.strptime(fields[0].strip(), "%Y/%m/%d %H:%M:%S.%f")
                util = float(fields[2].strip().rstrip("%").strip())
                gpu = int(fields[1])
            except ValueError as exc:
                raise SystemExit(f"{path}:{lineno}: {exc}") from None
            samples.append((stamp.replace(tzinfo=datetime.timezone.utc).timestamp(), gpu, util))
    return samples


def utilisation_by_row(result: dict, samples: list[tuple[float, int, float]]) -> list[dict]:
    """Per row: its name, the window and {GPU index: mean %} with the sample count."""
    out = []
    for row in result["rows"]:
        if "ended_unix" not in row:
            raise SystemExit("the result has no row times (ended_unix): rerun the bench")
        end = row["ended_unix"]
        start = end - row["wall_s"]
        inside = [(gpu, util) for t, gpu, util in samples if start <= t <= end]
        gpus = sorted({gpu for gpu, _ in inside})
        mean = {gpu: sum(u for g, u in inside if g == gpu) / sum(1 for g, _ in inside if g == gpu)
                for gpu in gpus}
        out.append({"row": row.get("row", row["scheme"]), "system": row["system"],
                    "window_s": [start, end], "samples": len(inside), "mean_util": mean})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("samples", type=Path)
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    rows = utilisation_by_row(json.loads(args.result.read_text()), read_samples(args.samples))
    print("| row | samples | mean GPU utilisation % (per GPU) |")
    print("|---|---|---|")
    for r in rows:
        util = ", ".join(f"{g}: {u:.0f}" for g, u in r["mean_util"].items()) or "-"
        print(f"| {r['row']} | {r['samples']} | {util} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
