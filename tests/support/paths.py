"""Where the real traces live: $GCODE_TRACES, else ../shared/traces beside the checkout (as in
CI), else the copy shipped in the repository's traces/ folder."""

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
_SHARED = _REPO.parent / "shared" / "traces"
TRACES = Path(os.environ.get("GCODE_TRACES") or (_SHARED if _SHARED.is_dir() else _REPO / "traces"))
