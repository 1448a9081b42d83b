"""``gcode simulate``: replay a straggler trace through one scheme or all of them."""

from __future__ import annotations

import argparse

from ..codes import SCHEMES, make_scheme, worker_samples
from ..jsonout import dumps
from ..sim import make_policy, simulate
from ..sim.network import network_arg
from ..terminal import escape
from .common import (
    CliError,
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


def add_simulate_parser(sub) -> None:
    """The ``simulate`` subcommand of ``sub`` (the top-level subparsers)."""
    p = sub.add_parser("simulate", help="replay a straggler trace through one or all schemes",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Replay per-worker round times through coding schemes and "
                                   "report the runtime. Without --scheme, compares all schemes "
                                   "and the auto scheme.",
                       epilog=SIMULATE_EPILOG)
    add_scheme_args(p, allow_auto=True)
    add_trace_args(p)
    g = p.add_argument_group("round ending and dispatch (as in gcode train)")
    flag(g, "coding.policy", default="paper")
    flag(g, "coding.deadline", default=None)
    flag(g, "coding.gap", default=0.05)
    flag(g, "run.dispatch", default="round",
         help="round: every worker starts a round when the previous one ends; arrival: a worker "
              "that arrived starts its next round at once (at most one round ahead), as gcode "
              "train --dispatch arrival (schemes whose tasks follow their own arrivals; others "
              "are skipped)")
    p.add_argument("--log", metavar="PREFIX",
                   help="write the run log PREFIX.pb (protobuf) and PREFIX.jsonl; with several "
                        "schemes, PREFIX-SCHEME.*; view with gcode replay / gcode plot")
    flag(p, "run.batch_size", default=4096,
         help="samples per job, to report the real per-worker load in whole samples (real_load, "
              "worker_samples in --json); the paper's 4096")
    p.add_argument("--network", type=network_arg, metavar="KEY=VALUE,...",
                   help="add each data plane's communication per round (gcode.sim.network; "
                        "docs/COLLECTIVE.md): alpha, beta (worker links), coord_alpha, coord_beta "
                        "(the coordinator's link), control_alpha (a control message; default coord_alpha), "
                        "params, bytes, control_bytes, host_beta (CPUs shared by every node), "
                        "accumulate_bytes; the planes' own work (gcode.sim.plane_work, seconds per "
                        "parameter: fold_fp32_s_per_param, fold_fp64_s_per_param, step_s_per_param, "
                        "check_s_per_param, check_every, folds, cpu_share, call_s, coord_fold_s_per_param, "
                        "coord_step_s_per_param); e.g. "
                        "alpha=50us,beta=10gbit,coord_beta=100gbit,params=11.2e6,step_s_per_param=3ns")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args) -> int:
    if args.log:  # a log that cannot be written fails before any work
        from ..paths import run_log_problem
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
    print(f"trace {escape(trace_name)}: {trace.shape[0]} rounds x {trace.shape[1]} workers; n={n}, "
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
                 "auto": "  (online tuner: scheme, parameters and policy)"}
        print(line + notes.get(name, ""))
        if "network" in res:
            star, coll = res["network"]["star"], res["network"]["collective"]
            print(f"{'':8} network: star {star['runtime_s']:.4f} s, collective {coll['runtime_s']:.4f} s "
                  f"(communication {star['comm_s_per_round']:.4g} / {coll['comm_s_per_round']:.4g} s, "
                  f"the planes' own work {star['work_s_per_round']:.4g} / {coll['work_s_per_round']:.4g} s "
                  f"per round)")
    if args.network is not None:
        print(f"network model: {args.network.describe()}")
    return 0


def _simulation(args, name: str, n: int, jobs: int, loads):
    """(scheme, policy) for one row of ``gcode simulate``."""
    if name == "auto":
        return _auto_scheme(args, n, jobs, loads)
    policy = make_policy(args.policy, mu=args.mu, deadline_s=args.deadline, gap=args.gap)
    return make_scheme(name, n=n, jobs=jobs, **scheme_params(args, name, n)), policy


def _simulate_one(args, name, scheme, policy, trace, trace_name, loads, bar) -> dict:
    if args.log:
        from ..telemetry.sim_logging import simulate_with_log
        prefix = args.log if args.scheme else f"{args.log}-{name}"
        result = simulate_with_log(scheme, trace, policy, loads, args.time_scale, prefix,
                                   trace_name=trace_name, progress=bar.update,
                                   dispatch=args.dispatch)
    else:
        result = simulate(scheme, trace, policy, loads, args.time_scale,
                          on_round=lambda *_: bar.update(1), dispatch=args.dispatch)
    samples = worker_samples(scheme, args.batch_size)
    network = {} if args.network is None else {"network": {
        "model": args.network.as_dict(),
        **args.network.run_costs(scheme.n, result.task_rounds, result.decoded_jobs, result.runtime_s)}}
    return {**result.summary(), **network, "dispatch": args.dispatch, "load_model": loads.kind,
            "batch_size": args.batch_size,
            "real_load": int(samples.max()) / args.batch_size,
            "worker_samples": {"min": int(samples.min()), "max": int(samples.max())}}


def _auto_scheme(args, n: int, jobs: int, loads):
    """The online auto scheme and its policy (the tuner); see gcode.sim.online."""
    from ..sim.online import OnlineConfig, OnlineTuner
    if args.policy not in ("paper", "partial"):
        raise CliError("--scheme auto supports --policy paper or partial (its fallback)")
    cfg = OnlineConfig(partial=args.policy == "partial" or args.scheme is None, start_mu=args.mu,
                       **({"gc_code": args.gc_code} if args.gc_code else {}))
    tuner = OnlineTuner(n, jobs, loads, cfg)
    return tuner.scheme, tuner
