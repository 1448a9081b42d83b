"""Command-line pieces shared by ``gcode simulate``, ``tune`` and ``bench``: the trace-replay
argument group, its validation, and the scheme parameters given or defaulted for a trace's n."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..codes import DEFAULT_GC_CODE, SCHEMES
from ..config import BY_API, MAX_WORKERS
from ..sim.load_model import LOAD_MODELS, LoadModel
from ..sim.paper import BUNDLED_TRACE, PAPER_LOAD_SLOPE, bundled_trace, default_params
from . import types
from .flags import add_setting

DELAY_BUDGET = 4  # default --jobs leaves this many extra trace rounds for delayed schemes


class CliError(Exception):
    """A user error with a message meant for the terminal."""


def progress_bar(total: int | None, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr)


def load_trace_arg(path: str | None) -> tuple[np.ndarray, str]:
    """The trace at ``path``, or the bundled 30-round Lambda trace."""
    from ..stragglers import load_trace
    if path is None:
        with bundled_trace() as bundled:
            return load_trace(bundled), f"bundled:{BUNDLED_TRACE}"
    if not Path(path).is_file():
        raise CliError(f"--trace: no such file: {path}")
    return load_trace(path), path


def add_load_model_args(g) -> None:
    """--load-model, --load-slope and --trace-load (validated by :func:`load_model_arg`)."""
    g.add_argument("--load-model", choices=LOAD_MODELS, default="additive",
                   help="how a worker's time grows with its load L: additive = trace + L*slope "
                        "(a fixed cost per call plus the work: AWS Lambda, the paper's model); "
                        "proportional = trace * L/L_trace (a slow worker is slow on every sample: "
                        "a GPU cluster). Default additive")
    g.add_argument("--load-slope", type=types.nonnegative,
                   help=f"additive: seconds added per unit of normalized load (default {PAPER_LOAD_SLOPE}, "
                        "the authors' fit for a 4096-sample job)")
    g.add_argument("--trace-load", type=types.positive,
                   help="proportional: the normalized load at which the trace was recorded, L_trace "
                        "in (0, 1] (default 1/n: each worker computed one uncoded share)")


def load_model_arg(args) -> LoadModel:
    """The load model the flags describe; a flag that does not fit the model is an error."""
    if args.load_model == "additive":
        if args.trace_load is not None:
            raise CliError("--trace-load applies to --load-model proportional only")
        slope = PAPER_LOAD_SLOPE if args.load_slope is None else args.load_slope
        if not slope >= 0:
            raise CliError(f"--load-slope must be >= 0, got {slope}")
        return LoadModel("additive", slope)
    if args.load_slope is not None:
        raise CliError("--load-slope applies to --load-model additive only")
    if args.trace_load is not None and not 0 < args.trace_load <= 1:
        raise CliError(f"--trace-load must be in (0, 1], got {args.trace_load}")
    return LoadModel("proportional", 0.0, args.trace_load)


def add_trace_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trace replay")
    g.add_argument("--trace", metavar="PATH",
                   help="per-worker round times (rows: rounds, columns: workers, seconds): a CSV "
                        "with no header, or a binary .npy or .pb (see gcode trace convert; it loads "
                        "faster). Default: the bundled 30-round, 256-worker Lambda trace")
    flag(g, "run.jobs", default=None, help="jobs to finish; runtime covers rounds 0..jobs+T-1",
         default_text=f"trace rounds - {DELAY_BUDGET}, at least 1")
    flag(g, "coding.mu", default=1.0)
    add_load_model_args(g)
    g.add_argument("--time-scale", type=types.positive, default=1.0,
                   help="multiply every trace time by this (> 0) before applying the load model")
    g.add_argument("--n", type=types.positive_int,
                   help=f"workers (default: the trace's columns; uses the first n; at most "
                        f"{MAX_WORKERS})")


def jobs_for(args, trace: np.ndarray) -> int:
    if args.jobs is None:
        return max(1, trace.shape[0] - DELAY_BUDGET)
    if args.jobs < 1:
        raise CliError(f"--jobs must be >= 1, got {args.jobs}")
    return args.jobs


def workers_for(args, trace: np.ndarray) -> int:
    n = trace.shape[1] if args.n is None else args.n  # (--n 0 is refused, never ignored)
    if n < 1:
        raise CliError(f"--n must be >= 1, got {n}")
    if n > MAX_WORKERS:
        raise CliError(f"--n must be <= {MAX_WORKERS}, got {n}" if args.n is not None else
                       f"the trace has {n} workers (columns), more than {MAX_WORKERS}: pass --n "
                       f"to use its first n columns")
    if n > trace.shape[1]:
        raise CliError(f"--n: the trace has {trace.shape[1]} workers (columns), fewer than n={n}")
    return n


def scheme_params(args, name: str, n: int) -> dict:
    """The scheme parameters given on the command line; with none, :func:`default_params`."""
    given = {"s": args.s, "B": args.B, "W": args.W, "lam": args.lam}
    accepted = SCHEMES[name][1]
    params = {k: v for k, v in given.items() if v is not None and k in accepted}
    if not params:
        params = default_params(name, n)
    if "gc_code" in accepted:
        params["gc_code"] = args.gc_code or DEFAULT_GC_CODE
    return params


def flag(group, path: str, **kw) -> argparse.Action:
    """The flag of the setting at ``path``, parsed with its bounds (the flag is named in errors),
    stored under argparse's usual name (``--gc-code``: ``args.gc_code``)."""
    s = BY_API[path]
    return add_setting(group, path, dest=s.flag.removeprefix("--").replace("-", "_"),
                       checked=True, **kw)


def add_scheme_args(p: argparse.ArgumentParser, scheme_required: bool = False,
                    allow_auto: bool = False) -> None:
    """--scheme and its parameters, as ``gcode train`` declares them; with none given, a scheme
    takes the paper's parameters scaled to n (:func:`scheme_params`)."""
    g = p.add_argument_group("scheme")
    names = (*SCHEMES, "auto") if allow_auto else tuple(SCHEMES)
    flag(g, "coding.scheme", default=None, choices=names, required=scheme_required,
         default_text=None if scheme_required else "every scheme" + (" and auto" if allow_auto else ""))
    for key in ("s", "B", "W", "lam"):
        flag(g, f"coding.{key}", default=None, default_text="the paper's, scaled to n")
    flag(g, "coding.gc_code", default=None)
