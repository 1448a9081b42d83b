"""The ``gcode`` command line: one module per command family, above every other package.

* :mod:`.main`: the parser, ``gcode tune | verify | trace``, and how errors become one line;
* :mod:`.simulate`, :mod:`.train`, :mod:`.bench`, :mod:`.runs` (``replay | plot | watch``);
* :mod:`.common`: the trace-replay flags and the paper's default parameters;
* :mod:`.types`: strict number converters shared by every flag.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
