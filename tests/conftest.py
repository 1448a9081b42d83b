"""Shared test settings: a Ray environment that stays on this machine."""

import os

# Ray: no token auth and no cluster discovery beyond this machine (see PLATFORM.md).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
