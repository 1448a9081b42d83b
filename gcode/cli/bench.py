"""``gcode bench {trace,sim,decode,auto,live,versus,scale}``: argument parsing and output for the benchmarks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..jsonout import dumps
from ..sim.load_model import LOAD_MODELS
from ..sim.paper import BUNDLED_TRACE, bundled_trace
from . import types
from .common import add_load_model_args, flag, load_model_arg

RESULTS = "results"
TRACES_HELP = ("folder with lambda-*.csv traces (default $GCODE_TRACES, ../shared/traces, or the "
               "repository's traces/)")


def default_traces_dir() -> Path | None:
    """$GCODE_TRACES, else ../shared/traces beside the current checkout, else the repository's
    own traces/ folder, if present."""
    candidates = [os.environ.get("GCODE_TRACES"), Path.cwd().parent / "shared" / "traces",
                  Path(__file__).resolve().parents[2] / "traces"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def _checked_out(command):
    """``command`` after checking that --out can hold the results (before any benchmark runs)."""
    def run(args) -> int:
        from ..paths import output_dir_problem
        problem = output_dir_problem(args.out)
        if problem is not None:
            raise ValueError(f"--out: {problem}")
        return command(args)
    return run


def _emit(args, name: str, result: dict, table: str, plot) -> int:
    from ..bench.report import write_results
    from ..terminal import escape_lines
    out = Path(args.out)
    paths = write_results(out, name, result, table)
    pngs = plot(result, out)
    if args.json:
        print(dumps(result))
    else:
        print(escape_lines(table))  # trace names come from file names
        print(escape_lines(f"\nwrote {paths['json']}, {paths['markdown']}, "
                           + ", ".join(str(p) for p in pngs)))
    return 0


def cmd_bench_trace(args) -> int:
    from tqdm import tqdm

    from ..bench.trace import (
        TraceBenchConfig,
        markdown_table,
        plot,
        public_traces,
        run_trace_bench,
    )
    traces = Path(args.traces) if args.traces else default_traces_dir()
    if traces is None:
        raise ValueError("--traces: give the folder of Lambda traces (e.g. traces)")
    if args.load_model == "proportional" and args.load_slope is not None:
        raise ValueError("--load-slope applies to --load-model additive only")
    if args.load_model == "additive" and args.trace_load is not None:
        raise ValueError("--trace-load applies to --load-model proportional only")
    cfg = TraceBenchConfig(traces, mu=args.mu, load_slope=args.load_slope, gc_code=args.gc_code,
                           load_model=args.load_model, trace_load=args.trace_load)
    with tqdm(total=len(public_traces(traces)), desc="bench trace", disable=args.json,
              leave=False, file=sys.stderr) as bar:
        result = run_trace_bench(cfg, progress=bar.update)
    return _emit(args, "bench_trace", result, markdown_table(result), plot)


def cmd_bench_sim(args) -> int:

    from ..bench.sim import markdown_table, plot, run_sim_bench
    from ..sim.tune import TuneSettings
    from ..stragglers import load_trace
    if args.trace:
        trace, name = load_trace(args.trace), Path(args.trace).name
    else:
        with bundled_trace() as p:
            trace, name = load_trace(p), p.name
    loads = load_model_arg(args)
    settings = TuneSettings(jobs=args.jobs or trace.shape[0] - 4, load_slope=loads.slope,
                            load_model=loads.kind, trace_load=loads.trace_load)
    result = run_sim_bench(trace, settings, repeats=args.repeats,
                           reference_fraction=0.1 if args.quick else 1.0)
    result["trace"] = name
    code = _emit(args, "bench_sim", result, markdown_table(result, name), plot)
    if not result["results_agree"]:
        raise ValueError("vectorized and reference runtimes differ: the bench is invalid")
    return code


def cmd_bench_decode(args) -> int:
    from tqdm import tqdm

    from ..bench.decode import markdown_table, plot, run_decode_bench
    ns, ds = tuple(args.n), tuple(int(float(d)) for d in args.d)
    fractions = tuple(args.s_fraction)
    with tqdm(total=len(ns) * len(ds) * len(fractions), desc="bench decode", disable=args.json,
              leave=False, file=sys.stderr) as bar:
        result = run_decode_bench(ns, ds, fractions, repeats=args.repeats,
                                  max_bytes=int(args.max_gib * 2**30), progress=bar.update)
    return _emit(args, "bench_decode", result, markdown_table(result), plot)


def cmd_bench_auto(args) -> int:
    from tqdm import tqdm

    from ..bench.auto import LOAD_MODELS, TUNING_GRID, markdown_table, plot, run_auto_bench
    traces = Path(args.traces) if args.traces else default_traces_dir()
    if traces is None:
        raise ValueError("--traces: give the folder of Lambda traces (e.g. traces)")
    logs = [Path(p) for p in args.logs] if args.logs is not None else sorted(
        (Path(__file__).resolve().parents[2] / "benchmarks" / "results").glob("*.rounds.jsonl"))
    if args.load_slope is not None or args.trace_load is not None:
        raise ValueError("bench auto: --load-slope and --trace-load are the suite's own (2.2013 s for "
                         "the Lambda and generated traces, fitted from a live run's compute times); "
                         "--load-model picks one of the two models")
    models = LOAD_MODELS if args.load_model is None else (args.load_model,)
    grid = None if args.quick else TUNING_GRID
    total = 0 if grid is None else int(np.prod([len(v) for v in grid.values()]))
    with tqdm(total=total, desc="tuner settings", disable=args.json or not total, leave=False,
              file=sys.stderr) as bar:
        result = run_auto_bench(traces, logs, grid, models, quick=args.quick, progress=bar.update)
    return _emit(args, "bench_auto", result, markdown_table(result), plot)


def cmd_bench_scale(args) -> int:
    from tqdm import tqdm

    if args.network is not None:
        return _bench_scale_network(args)
    from ..bench.scale import ROWS, end_to_end_runs, markdown_table, plot, run_scale_bench
    ns = tuple(args.n or ((64, 256) if args.quick else (256, 1024, 4096, 10000)))
    rounds = args.rounds or (40 if args.quick else 1000)
    book_rounds = args.book_rounds or (5 if args.quick else 40)
    if min(ns) < 2 or rounds < 8 or book_rounds < 2:
        raise ValueError("--n must be >= 2, --rounds >= 8 and --book-rounds >= 2")
    runs = [] if args.no_end_to_end else end_to_end_runs(args.quick)
    with tqdm(total=len(ns) * len(ROWS) + len(runs), desc="bench scale", disable=args.json,
              leave=False, file=sys.stderr) as bar:
        result = run_scale_bench(ns, rounds, book_rounds, args.cyclic_book_max_n, runs,
                                 progress=bar.update)
    return _emit(args, "bench_scale", result, markdown_table(result), plot)


def _bench_scale_network(args) -> int:
    from tqdm import tqdm

    from ..bench.scale_network import NS, markdown_table, plot, run_network_bench
    ns = tuple(args.n or NS)
    rounds = args.rounds or 100
    if min(ns) < 2 or rounds < 8:
        raise ValueError("--n must be >= 2 and --rounds >= 8")
    with tqdm(total=len(ns), desc="bench scale --network", disable=args.json, leave=False,
              file=sys.stderr) as bar:
        result = run_network_bench(args.network, ns, rounds=rounds, progress=bar.update)
    return _emit(args, "bench_scale_network", result, markdown_table(result), plot)


def cmd_bench_live(args) -> int:
    from tqdm import tqdm

    from ..bench.live import CALIBRATION, SCHEMES, markdown_table, plot, run_live_bench
    trace = Path(args.trace) if args.trace else None
    if trace is None:
        traces = default_traces_dir()
        trace = traces / BUNDLED_TRACE if traces else None
    if trace is None or not trace.is_file():
        with bundled_trace() as p:
            trace = Path(p)
    repeats = args.repeats or (1 if args.quick else 3)
    total = len(CALIBRATION) + repeats * 3 * len(SCHEMES)
    with tqdm(total=total, desc="live runs", disable=args.json, leave=False, file=sys.stderr) as bar:
        result = run_live_bench(trace, quick=args.quick, repeats=repeats, time_scale=args.time_scale,
                                jobs=args.jobs, progress=bar.update)
    return _emit(args, "bench_live", result, markdown_table(result), plot)


def cmd_bench_versus(args) -> int:
    from tqdm import tqdm

    from ..paths import output_dir_problem
    problem = None if args.log_dir is None else output_dir_problem(args.log_dir)
    if problem is not None:
        raise ValueError(f"--log-dir: {problem}")
    from ..bench.versus import VersusConfig, ddp_rows, run_versus
    from ..bench.versus_report import markdown_table, plot
    params = dict(args.inject_param or ())
    cfg = VersusConfig(model=args.model, workers=args.workers, jobs=args.jobs,
                       batch_size=args.batch_size, seed=args.seed,
                       schemes=tuple(s.strip() for s in args.schemes.split(",") if s.strip()),
                       inject=args.inject, inject_params=params, inject_trace=args.inject_trace,
                       time_scale=args.time_scale, gpus_per_worker=args.gpus_per_worker,
                       coordinator_device=args.coordinator_device, transport=args.transport,
                       prefetch=args.prefetch, data_plane=args.data_plane, gap=args.gap, repeats=args.repeats, log_dir=args.log_dir,
                       straggler_steps=args.straggler_steps)
    with tqdm(total=cfg.repeats * (len(ddp_rows(cfg)) + len(cfg.schemes)), desc="bench versus", disable=args.json,
              leave=False, file=sys.stderr) as bar:
        result = run_versus(cfg, progress=bar.update)
    return _emit(args, f"bench_versus_{cfg.model}", result, markdown_table(result), plot)


def _scale_or_auto(text: str) -> float | None:
    """``auto`` (None) or a finite number > 0."""
    return None if text.strip().lower() == "auto" else types.positive(text)


def add_bench_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks: tables, PNG plots and JSON under --out",
                           description="Measured benchmarks. Each writes <name>.json, <name>.md "
                                       "and PNG plots under --out (default ./results) and prints "
                                       "its table.")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")

    def common(p):
        p.add_argument("--out", default=RESULTS, help="results folder (default ./results)")
        p.add_argument("--json", action="store_true", help="print the result as one JSON object")

    p = kinds.add_parser("trace", help="every scheme on each trace: hindsight vs out-of-sample",
                         description="Every scheme on each public Lambda trace under the paper "
                                     "policy. Tunes on the first half of the rounds and evaluates "
                                     "on the second (out-of-sample), next to the best parameters "
                                     "for the second half itself (hindsight).")
    p.add_argument("--traces", help=TRACES_HELP)
    flag(p, "coding.mu", default=1.0)
    p.add_argument("--load-model", choices=LOAD_MODELS, default="additive",
                   help="additive: trace + load*slope (default); proportional: trace*load/trace_load")
    p.add_argument("--load-slope", type=types.nonnegative,
                   help="additive: seconds per unit load (default: fitted to the load-level "
                        "traces *-load*.csv only, never to an evaluated trace)")
    p.add_argument("--trace-load", type=types.positive,
                   help="proportional: the load at which the traces were recorded (default 1/n)")
    flag(p, "coding.gc_code", default="cyclic")
    common(p)
    p.set_defaults(func=_checked_out(cmd_bench_trace))

    p = kinds.add_parser("sim", help="simulator and tuner speed vs a per-round reference loop")
    p.add_argument("--trace", help="trace CSV (default: the bundled 30-round Lambda trace)")
    flag(p, "run.jobs", default=None, default_text="trace rounds - 4")
    p.add_argument("--repeats", type=types.positive_int, default=5, help="timed repeats of the fast search")
    p.add_argument("--quick", action="store_true", help="time the reference on 10%% of the grid")
    add_load_model_args(p)
    common(p)
    p.set_defaults(func=_checked_out(cmd_bench_sim))

    p = kinds.add_parser("auto", help="the auto scheme vs the hindsight-best fixed choice and uncoded",
                         description="The online auto scheme against the hindsight-best fixed choice "
                                     "over the same candidates and policies, and against uncoded, on "
                                     "the Lambda traces, Gilbert-Elliott traces generated from seeds "
                                     "(64 and 128 workers) and traces of live runs' logs, under both "
                                     "load models. The tuner's settings are chosen on a separate "
                                     "tuning suite, never on the traces evaluated.")
    p.add_argument("--traces", help=TRACES_HELP)
    p.add_argument("--logs", nargs="*", metavar="RUN.jsonl",
                   help="live runs' logs to take traces from (default: benchmarks/results/*.rounds.jsonl)")
    p.add_argument("--quick", action="store_true",
                   help="the tuner's default settings (no selection) and one seed per generated trace")
    add_load_model_args(p)
    p.set_defaults(load_model=None)  # both load models unless one is named
    common(p)
    p.set_defaults(func=_checked_out(cmd_bench_auto))

    p = kinds.add_parser("live", help="real Ray runs: schemes side by side under injected stragglers",
                         description="8 Ray worker actors train an MLP on digits under injected "
                                     "stragglers (bursty, Gilbert-Elliott, a Lambda trace replay); "
                                     "all schemes interleaved; live-over-simulated ratio for the trace, "
                                     "with the simulator calibrated once (slope and intercept) on "
                                     "separate runs.")
    p.add_argument("--quick", action="store_true", help="12 jobs, one repeat (a few minutes)")
    p.add_argument("--repeats", type=types.positive_int, help="interleaved repeats (default 1 quick, 3 full)")
    p.add_argument("--time-scale", type=types.positive, default=0.3,
                   help="trace seconds -> live seconds (default 0.3)")
    p.add_argument("--trace", help="trace to replay (default the 30-round Lambda trace)")
    flag(p, "run.jobs", default=None, default_text="12 quick, 24 full")
    common(p)
    p.set_defaults(func=_checked_out(cmd_bench_live))

    from ..bench.versus import ARRIVAL, DEFAULT_SCHEMES, MODELS, PIPELINED, ROW_NAMES
    p = kinds.add_parser(
        "versus", help="torch DDP vs gcode's schemes on the same injected stragglers",
        description="Trains the same model from the same seed on the same batches for the same "
                    "number of steps with torch DistributedDataParallel (gloo on CPU, NCCL when "
                    "every rank has its own GPU) and with gcode's schemes, every row under the "
                    "same per-(step, worker) injected delays: a DDP rank sleeps its delay after "
                    "computing, before its allreduce, as a gcode worker does before sending. "
                    "A row that trains M models round-robin (each 1/M of the steps) is compared "
                    "with DDP training the same M models for the same steps per model; every row "
                    "says models and steps_per_model, and one-model rows are tabled apart. "
                    "Reports wall time and vs_ddp = that DDP's wall time / the row's (above 1: "
                    "faster than DDP). The default injection is bursty (B,W,lam)=(1,2,2) with "
                    "base = 3 x one worker's measured compute time.",
        epilog="examples:\n  gcode bench versus --model mlp-wide --workers 8\n"
               "  gcode bench versus --model mlp --workers 4 --inject-param base=0.3\n"
               "  gcode bench versus --model resnet18 --gpus-per-worker 0.125 --jobs 20\n"
               "  gcode bench versus --inject none --schemes uncoded,gc-s1,uncoded-pipelined\n"
               "  gcode bench versus --model mlp --workers 4 --inject-param base=0.3 "
               "--schemes msgc-gap-pipelined,msgc-gap-arrival\n"
               "  gcode bench versus --model resnet18 --inject-trace traces/lambda-cnn-w256-r30-canada.csv "
               "--time-scale auto",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=tuple(MODELS), default="mlp",
                   help="mlp (784-256-10), mlp-wide (784-4096-10), resnet18, resnet50 "
                        "(CIFAR-shaped, generated by index); default mlp")
    flag(p, "scaling.workers", default=8, help="workers = DDP ranks")
    flag(p, "run.jobs", default=40, help="full-batch steps")
    flag(p, "run.batch_size", default=512, help="the global batch")
    flag(p, "run.seed", default=0)
    p.add_argument("--schemes", default=",".join(DEFAULT_SCHEMES),
                   help=f"comma-separated rows among {', '.join(ROW_NAMES)} (default "
                        f"{','.join(DEFAULT_SCHEMES)}). A '{PIPELINED}' row trains M = T+2 "
                        f"models instead of T+1, so that each round starts before the previous "
                        f"round's decodes and steps, which then overlap the workers' compute; "
                        f"a '{ARRIVAL}' row also sends each worker its next round's tasks as "
                        f"soon as its own results arrive (gcode train --dispatch arrival)")
    p.add_argument("--inject", default="bursty",
                   help="delay model for every row (bursty, gilbert_elliott, shifted_exp, pareto) "
                        "or none (default bursty)")
    flag(p, "run.inject.params", default=None,
         help="a delay-model parameter, repeatable (bursty defaults: B=1 W=2 lam=2, base = 3 x "
              "compute)")
    flag(p, "run.inject.trace", default=None)
    p.add_argument("--time-scale", type=_scale_or_auto, default=1.0,
                   help="multiply injected times; 'auto' (with --inject-trace) scales the trace "
                        "so that a round's slowest worker is on average --straggler-steps x one "
                        "worker's step slower than the round's median worker")
    p.add_argument("--straggler-steps", type=types.positive, default=3.0, metavar="K",
                   help="how long a straggler is, in one worker's measured steps: the bursty "
                        "injection's base (unless --inject-param base= sets it) and the target of "
                        "--time-scale auto (default 3)")
    flag(p, "scaling.gpus_per_worker", default=0.0, help="GPU share per worker and DDP rank")
    for name in ("coordinator_device", "transport", "prefetch"):
        flag(p, f"scaling.{name}", default="auto")
    flag(p, "scaling.data_plane", default="star", help="gcode's data plane for every gcode row: "
         "star (gradients to the coordinator) or collective (workers hold replicas and allreduce "
         "their coded results)")
    flag(p, "coding.gap", default=0.05,
         help="the quiet gap of the rows under the gap policy (msgc-gap, msgc-lam3-gap, "
              "msgc-cyclic-gap), as a fraction of the latest arrival")
    p.add_argument("--repeats", type=types.positive_int, default=1,
                   help="interleaved repeats (median reported)")
    p.add_argument("--log-dir", metavar="DIR",
                   help="write each gcode row's per-round JSONL log (arrivals, compute, sleep, "
                        "stragglers, as gcode train --log-jsonl) to DIR/ROW-REPEAT.jsonl")
    common(p)
    p.set_defaults(func=_checked_out(cmd_bench_versus))

    p = kinds.add_parser(
        "scale", help="cost per worker-round against n: simulator, coordinator bookkeeping, memory",
        description="For n in 256, 1024, 4096, 10000 and every scheme (the paper's parameters "
                    "scaled to n; FR and cyclic codes), on a synthetic trace resampled from the "
                    "bundled Lambda trace: simulator time and peak memory per worker-round; the "
                    "coordinator's per-round bookkeeping without Ray (plan, every worker's tasks, "
                    "the round decision, record, decode coefficients); and `gcode simulate` end to "
                    "end at the largest n, on CSV and on .npy, as subprocesses (wall time and peak "
                    "RSS). A flat line in the log-log plot means cost linear in n. The full run "
                    "takes several minutes.")
    p.add_argument("--quick", action="store_true",
                   help="n = 64 and 256, 40 rounds, one end-to-end run (seconds; for tests)")
    p.add_argument("--n", type=types.positive_int, nargs="+",
                   help="worker counts (default 256 1024 4096 10000)")
    p.add_argument("--rounds", type=types.positive_int, help="trace rounds simulated (default 1000)")
    p.add_argument("--book-rounds", type=types.positive_int,
                   help="rounds of bookkeeping timed per row (default 40)")
    p.add_argument("--cyclic-book-max-n", type=types.count, default=4096,
                   help="largest n at which cyclic codes' bookkeeping is timed (their rows cost "
                        "O(n s^3) to build once: minutes at n = 10000; default 4096)")
    p.add_argument("--no-end-to-end", action="store_true", help="skip the gcode simulate subprocess runs")
    from ..bench.scale_network import DEFAULT_NETWORK
    from ..sim.network import network_arg
    p.add_argument("--network", nargs="?", const=DEFAULT_NETWORK, type=network_arg, metavar="KEY=VALUE,...",
                   help="instead: each data plane's round time (star, collective) for n = 8 ... 1024 "
                        "(or --n) at 11.2M and 1e9 parameters under the network model, and where the "
                        "star stops paying (bench_scale_network.*). Default network: "
                        "alpha=50us,beta=10gbit,coord_beta=100gbit; keys as gcode simulate --network")
    common(p)
    p.set_defaults(func=_checked_out(cmd_bench_scale))

    p = kinds.add_parser("decode", help="decode latency and GB/s against n, d and s, vs numpy gemv")
    p.add_argument("--n", type=types.positive_int, nargs="+", default=[16, 64, 256],
                   help="workers (default 16 64 256)")
    p.add_argument("--d", nargs="+", default=["1e4", "1e5", "1e6", "1e7"],
                   help="values per result (default 1e4 1e5 1e6 1e7)")
    p.add_argument("--s-fraction", type=types.nonnegative, nargs="+", default=[0.0, 0.1],
                   help="stragglers tolerated, as a fraction of n (default 0 0.1)")
    p.add_argument("--repeats", type=types.positive_int, default=3, help="best of this many timings")
    p.add_argument("--max-gib", type=types.positive, default=2.0,
                   help="skip settings with more results than this")
    common(p)
    p.set_defaults(func=_checked_out(cmd_bench_decode))
