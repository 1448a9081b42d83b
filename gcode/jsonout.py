"""JSON for people and programs: ``dumps`` never writes NaN or Infinity (which are not JSON);
non-finite numbers become null, and numpy scalars and arrays become plain JSON."""

from __future__ import annotations

import json
import math
from typing import Any


def plain(value: Any) -> Any:
    """``value`` with numpy types converted and non-finite floats replaced by None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if type(value).__module__ == "numpy":
        value = value.tolist() if hasattr(value, "tolist") else value
        if isinstance(value, list):
            return plain(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(plain(value), allow_nan=False, **kwargs)


__all__ = ["dumps", "plain"]
