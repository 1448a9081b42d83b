"""Live Ray runtime: worker actors, the coordinator loop, fp64 decoding, concurrent models.

The only gcode package that imports Ray (lazily: importing this package does not start or
import Ray). Entry point::

    from gcode.config import TrainConfig
    from gcode.runtime import train
    result = train(TrainConfig())          # digits, 4 workers, M-SGC

See :func:`train` for the result keys and :mod:`gcode.runtime.cli_args` for the flags.
"""

from .cluster import WorkerPool, launch_workers, pool_session, start_local_ray, start_workers
from .run import train

__all__ = ["WorkerPool", "launch_workers", "pool_session", "start_local_ray", "start_workers", "train"]
