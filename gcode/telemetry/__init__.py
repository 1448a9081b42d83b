"""Telemetry: the gcode.v1 protobuf schema (proto/), run logs, plots and the Monitor gRPC service.

- :mod:`.messages`: the generated message classes plus constructors from plain Python
  (``run_config``, ``round_record``, ``run_summary``) and trace <-> bytes helpers;
- :mod:`.runlog`: ``RunLogWriter`` / ``read_run_log`` for ``<prefix>.pb`` + ``<prefix>.jsonl``;
- :mod:`.recorder`: ``RunRecorder``, one call per round for both the log and the monitor;
- :mod:`.sim_logging`: ``simulate_with_log`` for the simulator;
- :mod:`.monitor`: ``MonitorServer`` / ``MonitorClient`` (imports grpc);
- :mod:`.plots`, :mod:`.report`, :mod:`.cli`: ``gcode plot | replay | watch``;
- :mod:`.codegen`: regenerates ``_proto/`` from ``proto/`` (``python -m gcode.telemetry.codegen``).

The names below load lazily, so that ``python -m gcode.telemetry.codegen`` works even when the
generated code is stale or missing.
"""

from importlib import import_module

_EXPORTS = {
    "messages": ("LogEntry", "ModelLoss", "RoundRecord", "RunConfig", "RunSummary", "Status",
                 "Trace", "round_record", "run_config", "run_summary", "trace_from_proto",
                 "trace_to_proto"),
    "recorder": ("RunRecorder",),
    "runlog": ("RunLog", "RunLogError", "RunLogWriter", "read_run_log"),
    "monitor": ("MonitorClient", "MonitorServer"),
    "sim_logging": ("simulate_with_log",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)  # noqa: PLE0605 - derived from _EXPORTS


def __getattr__(name):
    if name in _WHERE:
        value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
