"""The ``gcode`` command line: simulate | tune | verify | train.

Every subcommand validates its input at the edge and turns a bad value into one clear line,
``gcode: error: …``, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from . import cli_types as types
from .codes import GC_CODE_KINDS, SCHEMES, make_scheme
from .config import MAX_WORKERS
from .jsonout import dumps
from .sim import POLICIES, make_policy, simulate
from .sim.tune import TuneSettings, tune
from .sim.verify import verify

BUNDLED_TRACE = "lambda-cnn-w256-r30-canada.csv"
#: the parameters the paper picked by grid search for 256 Lambda workers
PAPER_DEFAULTS = {"uncoded": {}, "ignore": {"s": 15}, "gc": {"s": 15},
                  "srsgc": {"B": 2, "W": 3, "lam": 23}, "msgc": {"B": 1, "W": 2, "lam": 27}}
DELAY_BUDGET = 4  # default --jobs leaves this many extra trace rounds for delayed schemes
#: gcode verify: at most this many worker-rounds (n x rounds x patterns), about a minute here
MAX_VERIFY_WORK = 10_000_000

EPILOG = """\
examples:
  gcode simulate                                  # every scheme on the bundled Lambda trace
  gcode simulate --scheme msgc --B 1 --W 2 --lam 27 --jobs 26 --json
  gcode tune --trace traces/lambda-cnn-w256-r20-canada.csv --jobs 16  # traces/: in the repo
  gcode verify --scheme gc --n 256 --s 27 --rounds 20 --patterns 5
  gcode simulate --scheme auto --policy partial   # the online tuner with the partial fallback
  gcode simulate --scheme gc --s 11 --log runs/gc && gcode plot runs/gc.pb --out plots
  gcode train                                     # live Ray training, M-SGC on digits
  gcode train --run-log runs/live --monitor 127.0.0.1:50051   # then: gcode watch 127.0.0.1:50051
  gcode train --config examples/digits-msgc.toml --json
  gcode bench trace --traces traces               # also: bench sim | decode | auto | live --quick

docs: README.md, docs/SCHEMES.md (the math), docs/DESIGN.md, docs/OPERATING.md (limits, errors)
"""


class CliError(Exception):
    """A user error with a message meant for the terminal."""


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr)


def load_trace_arg(path: str | None) -> tuple[np.ndarray, str]:
    """The trace at ``path``, or the bundled 30-round Lambda trace."""
    from .stragglers import load_trace
    if path is None:
        with resources.as_file(resources.files("gcode") / "data" / BUNDLED_TRACE) as bundled:
            return load_trace(bundled), f"bundled:{BUNDLED_TRACE}"
    if not Path(path).is_file():
        raise CliError(f"--trace: no such file: {path}")
    return load_trace(path), path


def _workers(args, trace: np.ndarray) -> int:
    """--n (validated against the trace), or the trace's columns."""
    if args.n is None:
        if trace.shape[1] > MAX_WORKERS:
            raise CliError(f"the trace has {trace.shape[1]} workers (columns), more than "
                           f"{MAX_WORKERS}: pass --n to use its first n columns")
        return trace.shape[1]
    if args.n > trace.shape[1]:
        raise CliError(f"--n {args.n}: the trace has only {trace.shape[1]} workers (columns)")
    if args.n > MAX_WORKERS:
        raise CliError(f"--n must be <= {MAX_WORKERS}, got {args.n}")
    return args.n


def _scheme_params(args, name: str) -> dict:
    given = {"s": args.s, "B": args.B, "W": args.W, "lam": args.lam}
    accepted = SCHEMES[name][1]
    params = {k: v for k, v in given.items() if v is not None and k in accepted}
    if not params:
        params = dict(PAPER_DEFAULTS[name])
    if "gc_code" in accepted:
        params["gc_code"] = args.gc_code or "cyclic"
    return params


def _add_scheme_args(p: argparse.ArgumentParser, scheme_required: bool = False,
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
    g.add_argument("--lam", type=types.whole, help="srsgc/msgc: distinct stragglers per window (<= n)")
    g.add_argument("--gc-code", choices=GC_CODE_KINDS,
                   help="gradient code inside gc/srsgc/msgc: cyclic (load (s+1)/n, the paper's; "
                        "fp64 messages when ill-conditioned) or fr (fractional repetition, exact "
                        "in fp32, load 1/floor(n/(s+1))). Default: cyclic, and fr for auto")


def _add_trace_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trace replay")
    g.add_argument("--trace", metavar="PATH",
                   help="CSV of per-worker round times (rows: rounds, columns: workers, seconds, "
                        "no header). Default: the bundled 30-round, 256-worker Lambda trace")
    g.add_argument("--jobs", type=types.positive_int,
                   help=f"jobs to finish; runtime covers rounds 0..jobs+T-1. Default: trace rounds "
                        f"- {DELAY_BUDGET}")
    g.add_argument("--mu", type=types.positive, default=1.0,
                   help="a worker straggles when slower than (1+mu) x the round's fastest (default 1)")
    g.add_argument("--load-slope", type=types.nonnegative, default=2.2013,
                   help="seconds added per unit of normalized load: time = trace + load*slope "
                        "(default 2.2013, the authors' fit for a 4096-sample job)")
    g.add_argument("--time-scale", type=types.positive, default=1.0,
                   help="multiply every trace time by this (> 0) before adding the load term")
    g.add_argument("--n", type=types.positive_int,
                   help=f"workers (default: the trace's columns; uses the first n; at most "
                        f"{MAX_WORKERS})")


def _jobs_for(args, trace: np.ndarray) -> int:
    jobs = args.jobs if args.jobs is not None else trace.shape[0] - DELAY_BUDGET
    if jobs < 1:
        raise CliError(f"--jobs must be >= 1, got {jobs}")
    return jobs


def cmd_simulate(args) -> int:
    names = [args.scheme] if args.scheme else [*SCHEMES, "auto"]
    if args.log:
        from .paths import run_log_problem
        for prefix in ([args.log] if args.scheme else [f"{args.log}-{name}" for name in names]):
            problem = run_log_problem(prefix)
            if problem is not None:
                raise CliError(f"--log: {problem}")
    trace, trace_name = load_trace_arg(args.trace)
    n = _workers(args, trace)
    jobs = _jobs_for(args, trace)
    results = {}
    with _progress(len(names), "simulate", not args.json and len(names) > 1) as bar:
        for name in names:
            if name == "auto":
                scheme, policy = _auto_scheme(args, n, jobs)
            else:
                policy = make_policy(args.policy, mu=args.mu, deadline_s=args.deadline)
                scheme = make_scheme(name, n=n, jobs=jobs, **_scheme_params(args, name))
            if args.log:
                from .telemetry.sim_logging import simulate_with_log
                prefix = args.log if args.scheme else f"{args.log}-{name}"
                result = simulate_with_log(scheme, trace, policy, args.load_slope, args.time_scale,
                                           prefix, trace_name=trace_name)
            else:
                result = simulate(scheme, trace, policy, args.load_slope, args.time_scale)
            results[name] = result.summary()
            bar.update(1)
    if args.json:
        out = results[args.scheme] if args.scheme else {"trace": trace_name, "schemes": results}
        print(dumps(out))
        return 0
    print(f"trace {trace_name}: {trace.shape[0]} rounds x {trace.shape[1]} workers; n={n}, "
          f"jobs={jobs}, policy={args.policy}, mu={args.mu}, load slope={args.load_slope} s")
    base = results.get("uncoded", {}).get("runtime_s")
    header = f"{'scheme':8} {'params':28} {'load':>8} {'T':>3} {'rounds':>6} {'waits':>5} {'runtime s':>10}"
    print(header + ("  vs uncoded" if base else ""))
    for name, res in results.items():
        if "segments" in res["params"]:
            last = res["params"]["segments"][-1]
            params = f"{len(res['params']['segments'])} segs, last {last['scheme']}"
        else:
            params = ",".join(f"{k}={v}" for k, v in res["params"].items() if k != "gc_code")
        line = (f"{name:8} {params:28} {res['load']:8.5f} {res['delay_T']:3d} {res['rounds']:6d} "
                f"{res['waits']:5d} {res['runtime_s']:10.4f}")
        if base:
            line += f"  {base / res['runtime_s']:.3f}x"
        notes = {"ignore": "  (approximate gradient)",
                 "auto": "  (online tuner with the partial-wait fallback)"}
        print(line + notes.get(name, ""))
    return 0


def _auto_scheme(args, n: int, jobs: int):
    """The online auto scheme and its policy (the tuner); see gcode.sim.online."""
    from .sim.online import OnlineConfig, OnlineTuner
    if args.policy not in ("paper", "partial"):
        raise CliError("--scheme auto supports --policy paper or partial (its fallback)")
    cfg = OnlineConfig(partial=args.policy == "partial" or args.scheme is None, start_mu=args.mu,
                       **({"gc_code": args.gc_code} if args.gc_code else {}))
    tuner = OnlineTuner(n, jobs, args.load_slope, cfg)
    return tuner.scheme, tuner


def cmd_tune(args) -> int:
    trace, trace_name = load_trace_arg(args.trace)
    settings = TuneSettings(jobs=_jobs_for(args, trace), mu=args.mu, load_slope=args.load_slope,
                            time_scale=args.time_scale, gc_code=args.gc_code)
    n = _workers(args, trace)
    with _progress(None, "tune grid", not args.json) as bar:
        result = tune(trace, settings, n=n, progress=bar.update)
    if args.json:
        print(dumps(result))
        return 0
    print(f"hindsight grid search on {trace_name} (n={n}, jobs={settings.jobs}): "
          f"{result['evaluated']} settings in {result['elapsed_s']:.3f} s")
    for name, best in result["best"].items():
        params = ",".join(f"{k}={v}" for k, v in best["params"].items() if k != "gc_code")
        print(f"  {name:8} {params:20} runtime {best['runtime_s']:9.4f} s  waits {best['waits']}")
    return 0


def cmd_verify(args) -> int:
    params = _scheme_params(args, args.scheme)
    if args.n > MAX_WORKERS:
        raise CliError(f"--n must be <= {MAX_WORKERS}, got {args.n}")
    work = args.n * args.rounds * args.patterns
    if work > MAX_VERIFY_WORK:
        raise CliError(f"--n {args.n} x --rounds {args.rounds} x --patterns {args.patterns} = "
                       f"{work:.3g} worker-rounds, more than the {MAX_VERIFY_WORK:.0e} one "
                       f"verify run does; lower --patterns or --rounds")
    probe = make_scheme(args.scheme, n=args.n, jobs=1, **params)
    jobs = args.rounds - probe.delay
    if jobs < 1:
        raise CliError(f"--rounds must exceed the scheme's delay T={probe.delay}, got {args.rounds}")
    with _progress(args.patterns, "verify", not args.json) as bar:
        report = verify(lambda: make_scheme(args.scheme, n=args.n, jobs=jobs, **params),
                        args.patterns, args.seed, progress=bar.update)
    out = report.summary()
    if args.json:
        print(dumps(out))
    else:
        print(f"{report.scheme} {report.params}: {report.patterns} conforming patterns, "
              f"{report.decoded_jobs} jobs decoded, {report.failures} failures, "
              f"max relative error {report.max_rel_error:.3e}"
              + ("" if report.exact else " (approximate scheme: errors expected)"))
    return 0 if report.failures == 0 else 1


def cmd_train(args) -> int:
    from .runtime.cli_args import run_from_args
    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gcode", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Straggler-tolerant distributed training with gradient coding (GC) and "
                    "sequential gradient coding (SR-SGC, M-SGC).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="replay a straggler trace through one or all schemes",
                       description="Replay per-worker round times through coding schemes and "
                                   "report the runtime. Without --scheme, compares all schemes "
                                   "(paper parameters unless given) and the auto scheme.")
    _add_scheme_args(p, allow_auto=True)
    _add_trace_args(p)
    p.add_argument("--policy", choices=POLICIES, default="paper",
                   help="round ending: paper = cut at (1+mu) x fastest, wait for all when the "
                        "stragglers break the scheme's model; partial = same cut, but on a violation "
                        "wait only until the missing workers conform (gcode's fallback); "
                        "deadline = cut at --deadline s; "
                        "all = always wait for everyone")
    p.add_argument("--deadline", type=types.positive, help="seconds, for --policy deadline")
    p.add_argument("--log", metavar="PREFIX",
                   help="write the run log PREFIX.pb (protobuf) and PREFIX.jsonl; with several "
                        "schemes, PREFIX-SCHEME.*; view with gcode replay / gcode plot")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("tune", help="hindsight grid search of every scheme's parameters on a trace",
                       description="Grid-search GC s, SR-SGC and M-SGC (B, W, lam) on a trace "
                                   "under the paper policy; reports the best per scheme. This is "
                                   "in-sample: evaluate on other rounds before trusting it.")
    _add_trace_args(p)
    p.add_argument("--gc-code", choices=GC_CODE_KINDS, default="cyclic",
                   help="code whose load the grid assumes (default cyclic, (s+1)/n)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("verify", help="check exact decoding under random conforming stragglers",
                       description="Run a scheme on random fp32 partial gradients under random "
                                   "straggler patterns its model allows; decode every job in fp64 "
                                   "and report the worst relative error. Exit 1 on any failure.")
    _add_scheme_args(p, scheme_required=True)
    p.add_argument("--n", type=types.positive_int, required=True,
                   help=f"workers (at most {MAX_WORKERS}; n x rounds x patterns at most "
                        f"{MAX_VERIFY_WORK:.0e})")
    p.add_argument("--rounds", type=types.positive_int, default=20,
                   help="rounds per pattern (default 20)")
    p.add_argument("--patterns", type=types.positive_int, default=20,
                   help="random patterns (default 20)")
    p.add_argument("--seed", type=types.count, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("train", help="live distributed training on Ray with a coding scheme",
                       description="Train M >= T+1 models round-robin on Ray worker actors that "
                                   "compute real torch gradients; decode despite stragglers.")
    from .runtime.cli_args import add_train_arguments
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    from .bench.cli import add_bench_parser
    add_bench_parser(sub)

    from .telemetry.cli import add_subcommands
    add_subcommands(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .runtime.health import RunFailed
    try:
        return args.func(args)
    except (CliError, ValueError) as exc:
        print(f"gcode: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RunFailed as exc:  # the run could not continue; what was kept is in the message
        print(f"gcode: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except MemoryError as exc:
        print(f"gcode: error: out of memory ({_one_line(exc) or 'MemoryError'}); the problem is "
              f"too large for this machine: lower --n, --jobs, --rounds or --patterns",
              file=sys.stderr)
        return 1
    except OSError as exc:  # a file or device the command needed failed
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"gcode: error: {where}{exc.strerror or _one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gcode: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
