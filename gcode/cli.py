"""The ``gcode`` command line: simulate | tune | verify | train | trace.

Every subcommand validates its input at the edge and turns a bad value into one clear line,
``gcode: error: …``, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from . import cli_types as types
from .cli_common import (
    CliError,
    add_trace_args,
    default_params,
    jobs_for,
    load_model_arg,
    load_trace_arg,
    progress_bar,
    workers_for,
)
from .codes import GC_CODE_KINDS, SCHEMES, make_scheme, worker_samples
from .config import MAX_WORKERS
from .jsonout import dumps
from .sim import POLICIES, make_policy, simulate
from .sim.tune import TuneSettings, grid_size, tune
from .sim.verify import verify

SIMULATE_EPILOG = """\
default parameters:
  With no --s/--B/--W/--lam, each scheme uses the paper's parameters scaled to the trace's n:
  GC and ignore s = round(15n/256); SR-SGC (B,W) = (2,3) with lam = round(23n/256); M-SGC
  (B,W) = (1,2) with lam = round(27n/256); each at least 1 and valid for n. At n = 256 these
  are the paper's. A scheme that cannot run on the trace (too few rounds for its delay) is
  listed as skipped. Pick parameters for your trace with `gcode tune`.

load models:
  additive (default)   time = trace*time_scale + load*slope        (AWS Lambda traces)
  proportional         time = trace*time_scale * load/trace_load   (GPU clusters)
"""

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
  gcode trace convert big.csv big.npy             # a binary trace: no parsing on load
  gcode bench scale --quick                       # cost per worker-round as n grows

docs: README.md, docs/SCHEMES.md (the math), docs/DESIGN.md, docs/OPERATING.md (limits, errors)
"""

#: gcode verify: at most this many worker-rounds (n x rounds x patterns), about a minute here
MAX_VERIFY_WORK = 10_000_000


def _scheme_params(args, name: str, n: int) -> dict:
    """The scheme parameters given on the command line; with none, :func:`default_params`."""
    given = {"s": args.s, "B": args.B, "W": args.W, "lam": args.lam}
    accepted = SCHEMES[name][1]
    params = {k: v for k, v in given.items() if v is not None and k in accepted}
    if not params:
        params = default_params(name, n)
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
    g.add_argument("--lam", type=types.whole,
                   help="srsgc/msgc: distinct stragglers per window (<= n)")
    g.add_argument("--gc-code", choices=GC_CODE_KINDS,
                   help="gradient code inside gc/srsgc/msgc: cyclic (load (s+1)/n, the paper's; "
                        "fp64 messages when ill-conditioned) or fr (fractional repetition, exact "
                        "in fp32, load 1/floor(n/(s+1))). Default: cyclic, and fr for auto")


def cmd_simulate(args) -> int:
    if args.log:  # a log that cannot be written fails before any work
        from .paths import run_log_problem
        names = [args.scheme] if args.scheme else [*SCHEMES, "auto"]
        for prefix in ([args.log] if args.scheme else [f"{args.log}-{name}" for name in names]):
            problem = run_log_problem(prefix)
            if problem is not None:
                raise CliError(f"--log: {problem}")
    trace, trace_name = load_trace_arg(args.trace)
    n = workers_for(args, trace)
    jobs = jobs_for(args, trace)
    loads = load_model_arg(args)
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    make_policy(args.policy, mu=args.mu, deadline_s=args.deadline, gap=args.gap)  # fails at once
    names = [args.scheme] if args.scheme else [*SCHEMES, "auto"]
    runs = {}
    for name in names:  # build every scheme first: the progress bar counts their rounds
        try:
            runs[name] = _simulation(args, name, n, jobs, loads)
        except (ValueError, CliError) as exc:
            if args.scheme:
                raise
            runs[name] = str(exc)  # the comparison table skips a scheme that cannot run here
    results = {}
    total = sum(scheme.total_rounds for scheme, _ in (v for v in runs.values() if not isinstance(v, str)))
    with progress_bar(total, "simulate rounds", not args.json) as bar:
        for name, run in runs.items():
            if isinstance(run, str):
                results[name] = {"skipped": run}
                continue
            scheme, policy = run
            try:
                results[name] = _simulate_one(args, name, scheme, policy, trace, trace_name, loads, bar)
            except ValueError as exc:
                if args.scheme:
                    raise
                results[name] = {"skipped": str(exc)}
    if all("skipped" in res for res in results.values()):  # nothing could run: the input is wrong
        raise CliError(next(iter(results.values()))["skipped"])
    if args.json:
        out = results[args.scheme] if args.scheme else {"trace": trace_name, "schemes": results}
        print(dumps(out))
        return 0
    setting = f"gap={args.gap}" if args.policy == "gap" else f"mu={args.mu}"
    print(f"trace {trace_name}: {trace.shape[0]} rounds x {trace.shape[1]} workers; n={n}, "
          f"jobs={jobs}, policy={args.policy}, {setting}, load model {loads.describe()}"
          + (", dispatch at arrival" if args.dispatch == "arrival" else ""))
    base = results.get("uncoded", {}).get("runtime_s")
    header = f"{'scheme':8} {'params':28} {'load':>8} {'T':>3} {'rounds':>6} {'waits':>5} {'runtime s':>10}"
    print(header + ("  vs uncoded" if base else ""))
    for name, res in results.items():
        if "skipped" in res:
            print(f"{name:8} skipped: {res['skipped']}")
            continue
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


def _simulation(args, name: str, n: int, jobs: int, loads):
    """(scheme, policy) for one row of ``gcode simulate``."""
    if name == "auto":
        return _auto_scheme(args, n, jobs, loads)
    policy = make_policy(args.policy, mu=args.mu, deadline_s=args.deadline, gap=args.gap)
    return make_scheme(name, n=n, jobs=jobs, **_scheme_params(args, name, n)), policy


def _simulate_one(args, name, scheme, policy, trace, trace_name, loads, bar) -> dict:
    if args.log:
        from .telemetry.sim_logging import simulate_with_log
        prefix = args.log if args.scheme else f"{args.log}-{name}"
        result = simulate_with_log(scheme, trace, policy, loads, args.time_scale, prefix,
                                   trace_name=trace_name, progress=bar.update,
                                   dispatch=args.dispatch)
    else:
        result = simulate(scheme, trace, policy, loads, args.time_scale,
                          on_round=lambda *_: bar.update(1), dispatch=args.dispatch)
    samples = worker_samples(scheme, args.batch_size)
    return {**result.summary(), "dispatch": args.dispatch, "load_model": loads.kind,
            "batch_size": args.batch_size,
            "real_load": int(samples.max()) / args.batch_size,
            "worker_samples": {"min": int(samples.min()), "max": int(samples.max())}}


def _auto_scheme(args, n: int, jobs: int, loads):
    """The online auto scheme and its policy (the tuner); see gcode.sim.online."""
    from .sim.online import OnlineConfig, OnlineTuner
    if args.policy not in ("paper", "partial"):
        raise CliError("--scheme auto supports --policy paper or partial (its fallback)")
    cfg = OnlineConfig(partial=args.policy == "partial" or args.scheme is None, start_mu=args.mu,
                       **({"gc_code": args.gc_code} if args.gc_code else {}))
    tuner = OnlineTuner(n, jobs, loads, cfg)
    return tuner.scheme, tuner


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
    print(f"hindsight grid search on {trace_name} (n={n}, jobs={settings.jobs}, load model "
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
    params = _scheme_params(args, args.scheme, args.n)
    probe = make_scheme(args.scheme, n=args.n, jobs=1, **params)
    jobs = args.rounds - probe.delay
    if jobs < 1:
        raise CliError(f"--rounds must exceed the scheme's delay T={probe.delay}, got {args.rounds}")
    with progress_bar(args.patterns, "verify", not args.json) as bar:
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


def cmd_trace_convert(args) -> int:
    import os
    import time

    from .stragglers.trace import load_trace, save_trace
    if not os.path.isfile(args.input):
        raise CliError(f"trace convert: no such file: {args.input}")
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise CliError("trace convert: OUT must differ from IN")
    start = time.perf_counter()
    times = load_trace(args.input)
    loaded = time.perf_counter() - start
    kind = save_trace(times, args.output, name=args.input)
    print(f"wrote {args.output} ({kind}, {os.path.getsize(args.output) / 2**20:.1f} MiB): "
          f"{times.shape[0]} rounds x {times.shape[1]} workers; read {args.input} in {loaded:.2f} s")
    return 0


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
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Replay per-worker round times through coding schemes and "
                                   "report the runtime. Without --scheme, compares all schemes "
                                   "and the auto scheme.",
                       epilog=SIMULATE_EPILOG)
    _add_scheme_args(p, allow_auto=True)
    add_trace_args(p)
    p.add_argument("--policy", choices=POLICIES, default="paper",
                   help="round ending: paper = cut at (1+mu) x fastest, wait for all when the "
                        "stragglers break the scheme's model; partial = same cut, but on a violation "
                        "wait only until the missing workers conform (gcode's fallback); "
                        "earliest = no cut: end the round as soon as the missing workers conform "
                        "(GC: the (n-s)-th arrival); gap = end once no worker has arrived for "
                        "--gap x the latest arrival's time and the missing workers conform; "
                        "deadline = cut at --deadline s; all = always wait for everyone")
    p.add_argument("--deadline", type=types.positive, help="seconds, for --policy deadline")
    p.add_argument("--gap", type=types.positive, default=0.05, metavar="FRACTION",
                   help="for --policy gap: the quiet time that ends a round, as a fraction of "
                        "the latest arrival's time (default 0.05)")
    p.add_argument("--dispatch", choices=("round", "arrival"), default="round",
                   help="round (default): every worker starts a round when the previous one "
                        "ends; arrival: a worker that arrived starts its next round at once, as "
                        "gcode train --dispatch arrival (uncoded, ignore, gc, msgc; others are "
                        "skipped)")
    p.add_argument("--log", metavar="PREFIX",
                   help="write the run log PREFIX.pb (protobuf) and PREFIX.jsonl; with several "
                        "schemes, PREFIX-SCHEME.*; view with gcode replay / gcode plot")
    p.add_argument("--batch-size", type=types.positive_int, default=4096,
                   help="samples per job, to report the real per-worker load in whole samples "
                        "(real_load, worker_samples in --json); default 4096, the paper's")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_simulate)

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

    p = sub.add_parser("trace", help="trace files: convert CSV to a binary format and back",
                       description="Work with trace files (per-worker round times: rows = rounds, "
                                   "columns = workers, seconds). Every trace flag (--trace, "
                                   "--inject-trace) reads CSV, .npy and .pb alike.")
    trace_sub = p.add_subparsers(dest="trace_command", required=True, metavar="ACTION")
    p = trace_sub.add_parser(
        "convert", help="convert a trace between CSV, .npy and .pb (protobuf gcode.v1.Trace)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read IN (CSV, .npy or .pb, validated as any trace flag validates it) and\nwrite OUT in the "
                    "format its suffix names:\n"
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
