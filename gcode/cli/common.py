"""Command-line pieces shared by ``gcode simulate``, ``tune`` and ``bench``: the trace-replay
argument group, its validation, and the scheme parameters given or defaulted for a trace's n."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..codes import DEFAULT_GC_CODE, GC_CODE_KINDS, SCHEMES
from ..config import MAX_WORKERS
from ..sim.load_model import LOAD_MODELS, LoadModel
from ..sim.paper import BUNDLED_TRACE, PAPER_LOAD_SLOPE, bundled_trace, default_params
from . import types

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
    g.add_argument("--jobs", type=types.positive_int,
                   help=f"jobs to finish; runtime covers rounds 0..jobs+T-1. Default: trace rounds "
                        f"- {DELAY_BUDGET} (at least 1)")
    g.add_argument("--mu", type=types.positive, default=1.0,
                   help="a worker straggles when slower than (1+mu) x the round's fastest (default 1)")
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


def add_scheme_args(p: argparse.ArgumentParser, scheme_required: bool = False,
                     allow_auto: bool = False) -> None:
    g = p.add_argument_group("scheme")
    g.add_argument("--scheme", choices=list(SCHEMES) + (["auto"] if allow_auto else []),
                   required=scheme_required,
                   help="coding scheme: uncoded (wait for all), ignore (fastest n-s, rescaled: an "
                        "APPROXIMATION), gc (gradient coding, T=0), srsgc (selective-repeat SGC, "
                        "T=B), msgc (multiplexed SGC, T=W-2+B)"
                        + ("; auto (online tuner: picks scheme, parameters and mu from the rounds "
                           "seen so far, switching at job boundaries)" if allow_auto else ""))
    g.add_argument("--s", type=types.whole, help="gc/ignore: stragglers tolerated per round")
    g.add_argument("--B", type=types.whole, help="srsgc/msgc: longest straggler burst, in rounds")
    g.add_argument("--W", type=types.whole, help="srsgc/msgc: window length, in rounds (W > B)")
    g.add_argument("--lam", type=types.whole,
                   help="srsgc/msgc: distinct stragglers per window (<= n)")
    g.add_argument("--gc-code", choices=GC_CODE_KINDS,
                   help="gradient code inside gc/srsgc/msgc: group (certified; fr when that costs "
                        "at most 3%% of load, else load (s+1)/n with fp64 messages), cyclic (the "
                        "paper's, load (s+1)/n; checked per decode set beyond small n, fp64) or fr "
                        "(fractional repetition, exact in fp32, load 1/floor(n/(s+1))). Default: "
                        "group, and fr for auto")
