"""Where benchmark results go: one JSON, one markdown table and PNG plots per benchmark."""

from __future__ import annotations

import platform
from datetime import date
from pathlib import Path


def machine_info() -> dict:
    import os
    return {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "date": date.today().isoformat()}


def write_results(out_dir: Path, name: str, result: dict, table: str) -> dict[str, Path]:
    """Write ``<name>.json`` and ``<name>.md`` under ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {**result, "environment": machine_info()}
    json_path = out_dir / f"{name}.json"
    md_path = out_dir / f"{name}.md"
    from ..jsonout import dumps
    from ..paths import write_atomic
    write_atomic(json_path, dumps(result, indent=2))
    env = result["environment"]
    write_atomic(md_path, f"{table}\n\nMeasured on {env['machine']} {env['system']}, "
                          f"{env['cpus']} CPUs, Python {env['python']}, {env['date']}.\n")
    return {"json": json_path, "markdown": md_path}
