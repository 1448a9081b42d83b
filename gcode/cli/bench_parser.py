"""``gcode bench``'s arguments: one subcommand per benchmark, each bound to its command in
:mod:`gcode.cli.bench`."""

from __future__ import annotations

from ..sim.load_model import LOAD_MODELS
from . import types
from .bench import (
    RESULTS,
    TRACES_HELP,
    cmd_bench_auto,
    cmd_bench_decode,
    cmd_bench_live,
    cmd_bench_scale,
    cmd_bench_sim,
    cmd_bench_trace,
    cmd_bench_versus,
)
from .common import add_load_model_args, flag


def _checked_out(command):
    """``command`` after checking that --out can hold the results (before any benchmark runs)."""
    def run(args) -> int:
        from ..paths import output_dir_problem
        problem = output_dir_problem(args.out)
        if problem is not None:
            raise ValueError(f"--out: {problem}")
        return command(args)
    return run


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
    flag(p, "scaling.zero", default=0, help="with --data-plane collective: 1 shards every "
         "optimizer's state over the workers (ZeRO-1)")
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
                        "alpha=50us,beta=10gbit,coord_beta=100gbit; keys as gcode simulate --network; "
                        "where they give no work terms, a dedicated core's measured here are added, with "
                        "fp64 accumulators, and the links-only figures shown beside")
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
