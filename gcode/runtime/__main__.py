"""``python -m gcode.runtime [flags]``: the same as ``gcode train``."""

import sys

from .cli_args import main

sys.exit(main())
