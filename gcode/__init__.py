"""gcode: straggler-tolerant distributed training with gradient coding and sequential gradient coding."""

__version__ = "0.1.0"
