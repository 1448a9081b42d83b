"""Generated protobuf and gRPC code for proto/; regenerate with `python -m gcode.telemetry.codegen`."""
