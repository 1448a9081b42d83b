"""Live runtime: worker actors, the coordinator loop, fp64 decoding, concurrent models.

The only gcode package that imports Ray (lazily: importing this package does not start or
import Ray). Entry point::

    from gcode.config import TrainConfig
    from gcode.runtime import train
    result = train(TrainConfig())          # digits, 4 workers, M-SGC

Rooms: ``loop/`` (the coordinator and its parts), ``transport/`` (how calls and results
travel), ``worker/`` (the actor), ``checkpoint/``, ``cluster/`` (Ray and the actors),
``collective/`` (the collective data plane's worker side); ``wire.py`` (the call and result
types both ends share), ``data.py`` (what both ends derive alike), ``build.py`` and ``run.py``
(a run's assembly). See docs/DESIGN.md.
"""

import importlib

#: public name -> submodule; imported on first use, so that ``gcode`` commands which only build
#: the ``train`` argument parser (every command does) never import torch
_EXPORTS = {"WorkerPool": ".cluster", "launch_workers": ".cluster", "pool_session": ".cluster",
            "start_local_ray": ".cluster", "start_workers": ".cluster", "train": ".run",
            "execute": ".run", "RunFailed": ".errors", "DivergedError": ".errors"}

__all__ = ["DivergedError", "RunFailed", "WorkerPool", "execute", "launch_workers", "pool_session",
           "start_local_ray", "start_workers", "train"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
