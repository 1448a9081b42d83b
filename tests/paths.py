"""Where the shared real traces live: ../shared/traces beside the checkout (as in CI)."""

import os
from pathlib import Path

TRACES = Path(os.environ.get("GCODE_TRACES", Path(__file__).resolve().parents[2] / "shared" / "traces"))
