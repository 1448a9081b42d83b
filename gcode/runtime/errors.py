"""Failures of a live run (not of its input, which is a ConfigError): ``gcode train`` prints
them as one line and exits with status 1."""


class RunFailed(RuntimeError):
    """A live run cannot continue; the message says why and what was kept."""


class DivergedError(RunFailed):
    """A model's parameters, or the gradient at them, are no longer finite."""


__all__ = ["DivergedError", "RunFailed"]
