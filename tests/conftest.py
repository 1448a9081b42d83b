"""Shared test settings: where the real traces live, and a Ray environment that stays local."""

import os
from pathlib import Path

#: ../shared/traces beside the repository (CI clones main with ../shared next to it)
TRACES = Path(os.environ.get("GCODE_TRACES", Path(__file__).resolve().parents[2] / "shared" / "traces"))

# Ray: no token auth and no cluster discovery beyond this machine (see PLATFORM.md).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
