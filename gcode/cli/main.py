"""The ``gcode`` command line: simulate | tune | verify | train | trace.

Every subcommand validates its input at the edge and turns a bad value into one clear line,
``gcode: error: …``, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from ..codes import DEFAULT_GC_CODE, make_scheme
from ..config import MAX_WORKERS, speaking
from ..jsonout import dumps
from ..sim.adversarial import verify_adversarial
from ..sim.tune import TuneSettings, grid_size, tune
from ..sim.verify import verify
from ..terminal import escape, one_line
from . import types
from .common import (
    CliError,
    add_load_model_args,
    add_scheme_args,
    add_trace_args,
    flag,
    jobs_for,
    load_model_arg,
    load_trace_arg,
    progress_bar,
    scheme_params,
    workers_for,
)
from .simulate import add_simulate_parser

EPILOG = """\
examples:
  gcode simulate                                  # every scheme on the bundled Lambda trace
  gcode simulate --scheme msgc --B 1 --W 2 --lam 27 --jobs 26 --json
  gcode tune --trace traces/lambda-cnn-w256-r20-canada.csv --jobs 16  # traces/: in the repo
  gcode verify --scheme gc --n 256 --s 27 --rounds 20 --patterns 5
  gcode simulate --scheme auto --policy partial   # the online tuner with the partial fallback
  gcode simulate --scheme gc --s 11 --log runs/gc && gcode plot runs/gc.pb --out plots
  gcode train                                     # live Ray training on digits, one model (auto)
  gcode train --run-log runs/live --monitor 127.0.0.1:50051   # then: gcode watch 127.0.0.1:50051
  gcode train --config examples/digits-msgc.toml --json
  gcode bench trace --traces traces               # also: bench sim | decode | auto | live --quick
  gcode trace convert big.csv big.npy             # a binary trace: no parsing on load
  gcode trace from-log runs/live.jsonl live.csv   # a live run's per-worker times as a trace
  gcode advise runs/probe.jsonl                   # will coding help? predicted speedup, config
  gcode bench scale --quick                       # cost per worker-round as n grows

docs: README.md, docs/TRAINING.md, docs/API.md (gcode.fit), docs/SCHEMES.md (the math),
  docs/SIMULATOR.md, docs/DESIGN.md, docs/OPERATING.md (limits, errors), docs/RESULTS.md
"""

#: gcode verify: at most this many worker-rounds (n x rounds x patterns), about a minute here
MAX_VERIFY_WORK = 10_000_000


def cmd_tune(args) -> int:
    trace, trace_name = load_trace_arg(args.trace)
    loads = load_model_arg(args)
    settings = TuneSettings(jobs=jobs_for(args, trace), mu=args.mu, load_slope=loads.slope,
                            time_scale=args.time_scale, gc_code=args.gc_code,
                            load_model=loads.kind, trace_load=loads.trace_load,
                            max_delay=args.max_delay)
    n = workers_for(args, trace)
    with progress_bar(grid_size(trace.shape[0], n, settings), "tune grid", not args.json) as bar:
        result = tune(trace, settings, n=n, progress=bar.update)
    if args.json:
        print(dumps(result))
        return 0
    print(f"hindsight grid search on {escape(trace_name)} (n={n}, jobs={settings.jobs}, load model "
          f"{loads.describe()}): {result['evaluated']} settings in {result['elapsed_s']:.3f} s")
    for name, best in result["best"].items():
        params = ",".join(f"{k}={v}" for k, v in best["params"].items() if k != "gc_code")
        print(f"  {name:8} {params:20} runtime {best['runtime_s']:9.4f} s  waits {best['waits']}")
    return 0


def cmd_verify(args) -> int:
    if args.n > MAX_WORKERS:
        raise CliError(f"--n must be <= {MAX_WORKERS}, got {args.n}")
    work = args.n * args.rounds * args.patterns
    if work > MAX_VERIFY_WORK:
        raise CliError(f"--n {args.n} x --rounds {args.rounds} x --patterns {args.patterns} = "
                       f"{work:.3g} worker-rounds, more than the {MAX_VERIFY_WORK:.0e} one "
                       f"verify run does; lower --patterns or --rounds")
    params = scheme_params(args, args.scheme, args.n)
    probe = make_scheme(args.scheme, n=args.n, jobs=1, **params)
    jobs = args.rounds - probe.delay
    if jobs < 1:
        raise CliError(f"--rounds must exceed the scheme's delay T={probe.delay}, got {args.rounds}")
    make = lambda: make_scheme(args.scheme, n=args.n, jobs=jobs, **params)
    if args.adversarial:
        report, search = verify_adversarial(make, args.seed, args.evaluations, keep=args.patterns)
        out = {**report.summary(), "search": search}
    else:
        with progress_bar(args.patterns, "verify", not args.json) as bar:
            report = verify(make, args.patterns, args.seed, progress=bar.update)
        out = report.summary()
    if args.json:
        print(dumps(out))
    else:
        kind = "adversarial" if args.adversarial else "conforming"
        print(f"{report.scheme} {report.params}: {report.patterns} {kind} patterns, "
              f"{report.decoded_jobs} jobs decoded, {report.failures} failures, "
              f"max relative error {report.max_rel_error:.3e}, {report.refused_rounds} rounds waited "
              f"for a decode over the error budget"
              + ("" if report.exact else " (approximate scheme: errors expected)"))
    return 0 if report.failures == 0 else 1


def cmd_trace_convert(args) -> int:
    import os
    import time

    from ..stragglers.trace import load_trace, save_trace
    if not os.path.isfile(args.input):
        raise CliError(f"trace convert: no such file: {args.input}")
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise CliError("trace convert: OUT must differ from IN")
    start = time.perf_counter()
    times = load_trace(args.input)
    loaded = time.perf_counter() - start
    kind = save_trace(times, args.output, name=args.input)
    print(f"wrote {escape(args.output)} ({kind}, {os.path.getsize(args.output) / 2**20:.1f} MiB): "
          f"{times.shape[0]} rounds x {times.shape[1]} workers; read {escape(args.input)} in "
          f"{loaded:.2f} s")
    return 0


def cmd_trace_from_log(args) -> int:
    from ..tracelog import write_trace
    print(write_trace(args.log, args.output))
    return 0


def cmd_advise(args) -> int:
    from ..advise import advise, from_log, from_trace, report
    if (args.log is None) == (args.trace is None):
        raise CliError("advise: give one of a run log (RUN.jsonl or PREFIX.pb) and --trace PATH")
    if args.log is not None:
        measured = from_log(args.log)
    else:
        trace, name = load_trace_arg(args.trace)
        measured = from_trace(trace, load_model_arg(args), name)
    result = advise(measured, models=args.models, bootstrap=args.bootstrap, seed=args.seed)
    print(dumps(result) if args.json else report(result))
    return 0


def cmd_train(args) -> int:
    from .train import run_from_args
    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gcode", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Straggler-tolerant distributed training with gradient coding (GC) and "
                    "sequential gradient coding (SR-SGC, M-SGC).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_simulate_parser(sub)

    p = sub.add_parser("tune", help="hindsight grid search of every scheme's parameters on a trace",
                       description="Grid-search GC s, SR-SGC and M-SGC (B, W, lam) on a trace "
                                   "under the paper policy; reports the best per scheme. This is "
                                   "in-sample: evaluate on other rounds before trusting it. The "
                                   "grid grows with n and the delay budget, not with the trace's "
                                   "length.")
    add_trace_args(p)
    p.add_argument("--max-delay", type=types.count, default=4,
                   help="largest delay budget D searched: SR-SGC B <= D, M-SGC W-1+B <= D, and "
                        "never more than trace rounds - jobs (default 4)")
    flag(p, "coding.gc_code", default=DEFAULT_GC_CODE,
         help="the gradient code whose load the grid assumes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("verify", help="check exact decoding under conforming stragglers",
                       description="Run a scheme on random fp32 partial gradients under random "
                                   "(or, with --adversarial, searched) straggler patterns its model "
                                   "allows; decode every job in fp64 and report the worst relative "
                                   "error. A set the scheme refuses is waited on. Exit 1 on any "
                                   "failure.")
    add_scheme_args(p, scheme_required=True)
    p.add_argument("--n", type=types.positive_int, required=True,
                   help=f"workers (at most {MAX_WORKERS}; n x rounds x patterns at most "
                        f"{MAX_VERIFY_WORK:.0e})")
    p.add_argument("--rounds", type=types.positive_int, default=20,
                   help="rounds per pattern (default 20)")
    p.add_argument("--patterns", type=types.positive_int, default=20,
                   help="random patterns (default 20)")
    p.add_argument("--seed", type=types.count, default=0, help="random seed (default 0)")
    p.add_argument("--adversarial", action="store_true",
                   help="search each code for the straggler sets it decodes least exactly "
                        "(contiguous blocks, hill-climbing on the decode's amplification, a "
                        "certified code's worst group subsets) instead of sampling; --patterns "
                        "sets how many of them run per code")
    p.add_argument("--evaluations", type=types.positive_int, default=2000,
                   help="adversarial: straggler sets scored per code (default 2000)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("train", help="live distributed training on Ray with a coding scheme",
                       description="Train M >= T+1 models round-robin on Ray worker actors that "
                                   "compute real torch gradients; decode despite stragglers.")
    from .train import add_train_arguments
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("trace", help="trace files: convert CSV to a binary format and back",
                       description="Work with trace files (per-worker round times: rows = rounds, "
                                   "columns = workers, seconds). Every trace flag (--trace, "
                                   "--inject-trace) reads CSV, .npy and .pb alike.")
    trace_sub = p.add_subparsers(dest="trace_command", required=True, metavar="ACTION")
    p = trace_sub.add_parser(
        "convert", help="convert a trace between CSV, .npy and .pb (protobuf gcode.v1.Trace)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read IN (CSV, .npy or .pb, validated as any trace flag validates it) and\n"
                    "write OUT in the format its suffix names:\n"
                    "  .npy  a float64 array (read back with allow_pickle=False)\n"
                    "  .pb   a serialized gcode.v1.Trace (proto/gcode/v1/run.proto)\n"
                    "  .csv  text, every value written to round-trip exactly\n"
                    "A binary trace needs no text parsing: at 1,000 rounds x 10,000 workers the\n"
                    ".npy loads in about 0.05 s, the 70 MB CSV in about 1 s.",
        epilog="examples:\n  gcode trace convert <times>.csv <times>.npy\n"
               "  gcode simulate --trace <times>.npy --scheme msgc --B 1 --W 2 --lam 200")
    p.add_argument("input", metavar="IN", help="trace to read (.csv, .npy or .pb)")
    p.add_argument("output", metavar="OUT", help="trace to write; its suffix picks the format")
    p.set_defaults(func=cmd_trace_convert)
    p = trace_sub.add_parser(
        "from-log", help="per-worker round times of a live run, from its log",
        description="Write the per-worker round times of a live run (gcode train --log-jsonl, "
                    "gcode.fit, bench versus --log-dir, or a --run-log PREFIX.pb/.jsonl) as a trace. "
                    "The load model is fitted from the workers' compute times; the trace holds its "
                    "base times, and the command prints how to replay it. A worker cut off whose late "
                    "reply was not logged gets a guessed time (counted in the output).")
    p.add_argument("log", metavar="RUN.jsonl", help="the run's log")
    p.add_argument("output", metavar="OUT", help="trace to write (.csv, .npy or .pb)")
    p.set_defaults(func=cmd_trace_from_log)

    p = sub.add_parser("advise", help="will coding help my cluster? a prediction from a run's times",
                       description="From a run log (or a trace), recover per-worker round times and "
                                   "the load model, simulate every candidate of the auto scheme as a "
                                   "fixed choice, and print the predicted speedup over uncoded gcode "
                                   "and over DDP, the recommended CodingConfig (Python and flags) and "
                                   "how confident the prediction is (rounds seen, block bootstrap).")
    p.add_argument("log", nargs="?", metavar="RUN.jsonl", help="a run's log (e.g. a short uncoded probe)")
    p.add_argument("--trace", metavar="PATH",
                   help="per-worker round times instead of a log (base times of --load-model)")
    add_load_model_args(p)
    p.add_argument("--models", type=types.positive_int, default=1,
                   help="models the run may train round-robin (default 1: only schemes with T = 0, "
                        "uncoded and GC; M admits delays T <= M-1, each model getting 1/M of the steps)")
    p.add_argument("--bootstrap", type=types.count, default=100,
                   help="block-bootstrap resamples over rounds for the confidence (default 100)")
    p.add_argument("--seed", type=types.count, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_advise)

    from .bench_parser import add_bench_parser
    add_bench_parser(sub)

    from .runs import add_subcommands
    add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..runtime.errors import RunFailed
    try:
        with speaking("cli"):
            return args.func(args)
    except (CliError, ValueError) as exc:
        print(f"gcode: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except RunFailed as exc:  # the run could not continue; what was kept is in the message
        print(f"gcode: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except MemoryError as exc:
        print(f"gcode: error: out of memory ({one_line(exc) or 'MemoryError'}); the problem is "
              f"too large for this machine: lower --n, --jobs, --rounds or --patterns",
              file=sys.stderr)
        return 1
    except OSError as exc:  # a file or device the command needed failed
        where = f"{escape(exc.filename)}: " if exc.filename else ""
        print(f"gcode: error: {where}{exc.strerror or one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or a second SIGTERM (gcode.runtime.signals)
        signum = getattr(exc, "signum", None)
        print(f"gcode: stopped at once by a second {exc}" if signum else "gcode: interrupted",
              file=sys.stderr)
        return 128 + (signum or 2)


if __name__ == "__main__":
    sys.exit(main())
