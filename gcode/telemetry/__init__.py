"""Telemetry: the gcode.v1 protobuf schema (proto/), run logs, plots and the Monitor gRPC service.

- :mod:`.messages`: the generated message classes plus constructors from plain Python
  (``run_config``, ``round_record``, ``run_summary``) and trace <-> bytes helpers;
- :mod:`.runlog`: ``RunLogWriter`` / ``read_run_log`` for ``<prefix>.pb`` + ``<prefix>.jsonl``;
- :mod:`.recorder`: ``RunRecorder``, one call per round for both the log and the monitor;
- :mod:`.sim_logging`: ``simulate_with_log`` for the simulator;
- :mod:`.monitor`: ``MonitorServer`` / ``MonitorClient`` (imports grpc);
- :mod:`.plots`, :mod:`.report`, :mod:`.cli`: ``gcode plot | replay | watch``;
- :mod:`.codegen`: regenerates ``_proto/`` from ``proto/`` (``python -m gcode.telemetry.codegen``).
"""

from .messages import (LogEntry, ModelLoss, RoundRecord, RunConfig, RunSummary, Status, Trace,
                       round_record, run_config, run_summary, trace_from_proto, trace_to_proto)
from .recorder import RunRecorder
from .runlog import RunLog, RunLogError, RunLogWriter, read_run_log

__all__ = ["LogEntry", "ModelLoss", "RoundRecord", "RunConfig", "RunLog", "RunLogError",
           "RunLogWriter", "RunRecorder", "RunSummary", "Status", "Trace", "read_run_log",
           "round_record", "run_config", "run_summary", "trace_from_proto", "trace_to_proto"]
