"""``gcode bench {trace,sim,decode,auto,live,versus,scale}``: the commands and their output
(their arguments: :mod:`gcode.cli.bench_parser`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..jsonout import dumps
from ..sim.paper import BUNDLED_TRACE, bundled_trace
from .common import load_model_arg

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
                       prefetch=args.prefetch, data_plane=args.data_plane, zero=args.zero, gap=args.gap,
                       repeats=args.repeats, log_dir=args.log_dir,
                       straggler_steps=args.straggler_steps)
    before = os.getloadavg()  # a shared machine: say how busy it was (1, 5, 15 min)
    with tqdm(total=cfg.repeats * (len(ddp_rows(cfg)) + len(cfg.schemes)), desc="bench versus",
              disable=args.json, leave=False, file=sys.stderr) as bar:
        result = run_versus(cfg, progress=bar.update)
    result["load_average"] = {"before": list(before), "after": list(os.getloadavg())}
    return _emit(args, f"bench_versus_{cfg.model}", result, markdown_table(result), plot)
