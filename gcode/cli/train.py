"""Flags of ``gcode train``: ``add_train_arguments(parser)``, ``config_from_args(args)``,
``run_from_args(args)``.

Precedence: built-in defaults < ``--config FILE`` (TOML or YAML) < flags. Every flag defaults to
"not given", so a flag only overrides what it names; the result is validated once, and a bad
value is reported with its config field (``scheme.B: must be >= 1, got 0``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..config import (
    COORDINATOR_DEVICES,
    DATASET_NAMES,
    DISPATCH,
    DISPATCH_AT_ARRIVAL_SCHEMES,
    FAULT_KINDS,
    GC_CODES,
    INJECT_MODES,
    MODES,
    POLICY_NAMES,
    PREFETCH,
    SCHEME_NAMES,
    SCHEME_PARAMS,
    TRANSPORTS,
    TrainConfig,
    load_config,
    with_overrides,
)
from . import types

EXAMPLES = """\
examples:
  gcode train                                   # M-SGC (B,W,lam)=(1,2,2), 4 workers, digits MLP
  gcode train --scheme gc --s 1 --workers 4 --jobs 20 --json
  gcode train --inject bursty --inject-param B=1 --inject-param W=2 --inject-param lam=2 \\
              --inject-param base=0.02 --inject-param slowdown=5
  gcode train --workers 8 --scheme msgc --B 1 --W 2 --lam 3 --jobs 29 \\
              --inject-trace gcode/data/lambda-cnn-w256-r30-canada.csv --time-scale 0.4
  gcode train --config examples/digits-msgc.toml --lr 0.02 --log-jsonl runs/r1.jsonl
  gcode train --scheme gc --s 1 --jobs 400 --checkpoint-dir runs/ck --checkpoint-every 20
  gcode train --resume runs/ck                  # continue from the newest checkpoint in runs/ck
"""

#: flag dest -> dotted config field
FLAG_FIELDS = {
    "scheme": "scheme.name", "s": "scheme.s", "B": "scheme.B", "W": "scheme.W",
    "lam": "scheme.lam", "gc_code": "scheme.gc_code", "jobs": "scheme.jobs",
    "policy": "policy.name", "mu": "policy.mu", "gap": "policy.gap",
    "deadline": "policy.deadline_s",
    "workers": "cluster.workers", "address": "cluster.address", "num_cpus": "cluster.num_cpus",
    "worker_cpus": "cluster.worker_cpus", "gpus_per_worker": "cluster.gpus_per_worker",
    "coordinator_device": "cluster.coordinator_device", "decode_threads": "cluster.decode_threads",
    "decode_device": "cluster.decode_device", "transport": "cluster.transport",
    "prefetch": "cluster.prefetch",
    "eval_every": "train.eval_every",
    "models": "train.models", "mode": "train.mode", "seed": "train.seed",
    "model": "train.model", "dataset": "train.dataset", "num_samples": "train.num_samples",
    "optimizer": "train.optimizer", "lr": "train.lr", "batch_size": "train.batch_size",
    "check_decode": "train.check_decode", "pipeline": "train.pipeline",
    "dispatch": "train.dispatch",
    "inject": "inject.model", "inject_trace": "inject.trace", "time_scale": "inject.time_scale",
    "inject_mode": "inject.mode", "log_jsonl": "log.jsonl", "run_log": "log.run_log",
    "load_slope": "scheme.auto_load_slope",
    "checkpoint_dir": "checkpoint.dir", "checkpoint_every": "checkpoint.every",
    "checkpoint_keep": "checkpoint.keep", "resume": "checkpoint.resume",
}


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), parse_value(raw.strip())


def parse_value(raw: str) -> Any:
    """'3' -> 3, '0.5' / '1e-3' -> float, 'true'/'false' -> bool, anything else a string (so
    '1_0', 'nan' and 'inf' stay text, and the field they set names them as wrong)."""
    return types.scalar(raw)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every ``gcode train`` flag to ``parser`` (all default to 'not given')."""
    S = argparse.SUPPRESS
    if parser.epilog is None:
        parser.epilog = EXAMPLES
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--config", metavar="FILE", default=S,
                        help="TOML or YAML file with [scheme] [policy] [cluster] [train] [inject] "
                             "[log] tables and [[faults]]; flags override it")

    g = parser.add_argument_group("scheme (as in gcode simulate)")
    g.add_argument("--scheme", choices=SCHEME_NAMES, default=S,
                   help="uncoded: wait for all; ignore: fastest n-s rescaled (APPROXIMATE); gc: "
                        "gradient coding, T=0; srsgc: selective-repeat SGC, T=B; msgc: "
                        "multiplexed SGC, T=W-2+B, the lowest load (default msgc); auto: the "
                        "online tuner picks scheme, parameters and mu from the rounds seen so "
                        "far and switches at job boundaries")
    g.add_argument("--s", type=types.whole, default=S,
                   help="gc/ignore: stragglers tolerated in every round (default 1)")
    g.add_argument("--B", type=types.whole, default=S,
                   help="srsgc/msgc: a worker straggles in bursts of at most B rounds (default 1)")
    g.add_argument("--W", type=types.whole, default=S,
                   help="srsgc/msgc: window length in rounds, W > B (default 2)")
    g.add_argument("--lam", type=types.whole, default=S,
                   help="srsgc/msgc: at most lam distinct stragglers per window (default min(2,n))")
    g.add_argument("--gc-code", choices=GC_CODES, default=S,
                   help="code inside gc/srsgc/msgc: group (certified; fr where that costs at "
                        "most 3%% of load), cyclic (the paper's; checked per decode set, fp64) or "
                        "fr (fractional repetition: exact, streams in decode). Default group "
                        "(auto: fr)")
    g.add_argument("--load-slope", type=types.number, metavar="SECONDS", default=S,
                   help="auto: seconds per unit of normalized load the tuner assumes when it "
                        "compares schemes (default: measured live, round by round)")
    g.add_argument("--jobs", type=types.whole, default=S,
                   help="full gradients to compute; the run takes jobs+T rounds (default 40)")

    g = parser.add_argument_group("round ending (as in gcode simulate)")
    g.add_argument("--policy", choices=POLICY_NAMES, default=S,
                   help="paper: cut at (1+mu) x the fastest arrival; partial: the same cut, but "
                        "a violation waits only until the missing workers conform; earliest: no "
                        "cut, end as soon as the missing workers conform (GC: the (n-s)-th "
                        "arrival); gap: end once no worker has arrived for --gap x the latest "
                        "arrival's time and the missing workers conform (suits sequential "
                        "schemes: a worker trailing by a hair is never cut); deadline: "
                        "cut at --deadline seconds; all: wait for every worker. If the "
                        "stragglers at the cut break the scheme's model, the round waits for all "
                        "(counted in 'waits')")
    g.add_argument("--mu", type=types.number, default=S,
                   help="paper policy: stragglers are slower than (1+mu) x fastest (default 1)")
    g.add_argument("--gap", type=types.number, metavar="FRACTION", default=S,
                   help="gap policy: the quiet time that ends a round, as a fraction of the "
                        "latest arrival's time since dispatch (default 0.05)")
    g.add_argument("--deadline", type=types.number, metavar="SECONDS", default=S,
                   help="deadline policy: seconds after dispatch")

    g = parser.add_argument_group("cluster")
    g.add_argument("--workers", type=types.whole, metavar="N", default=S,
                   help="worker actors n (default 4); each gets min(1, CPUs/n) CPUs")
    g.add_argument("--address", default=S,
                   help="Ray cluster address (host:port or ray://...). Default: start a local "
                        "loopback-only Ray instance for this run")
    g.add_argument("--num-cpus", type=types.whole, default=S,
                   help="CPUs of the local Ray instance (default: all cores)")
    g.add_argument("--gpus-per-worker", type=types.number, metavar="G", default=S,
                   help="GPUs each worker reserves; fractional shares a GPU (0.125: 8 workers on "
                        "one GPU). Workers then compute on their GPU (default 0: CPU)")
    g.add_argument("--coordinator-device", choices=COORDINATOR_DEVICES, default=S,
                   help="where the coordinator keeps its models and decodes (fp64): auto uses a "
                        "GPU when this process sees one (default auto)")
    g.add_argument("--decode-device", choices=COORDINATOR_DEVICES, default=S,
                   help="where jobs decode in fp64: auto follows --coordinator-device; cpu "
                        "decodes results where they arrive (host memory) with --decode-threads")
    g.add_argument("--transport", choices=TRANSPORTS, default=S,
                   help="how each round's calls and arrays move: shm (a Unix socket per worker "
                        "and shared memory; workers on this node only), ray (actor calls and "
                        "the object store; any cluster), auto (shm when every worker is on "
                        "this node, else ray; default)")
    g.add_argument("--prefetch", choices=PREFETCH, default=S,
                   help="workers read the samples of their next task on a background thread "
                        "while computing the current one: on, off, or auto (on for GPU workers, "
                        "whose GPU would otherwise wait for the CPU; default)")
    g.add_argument("--decode-threads", type=types.whole, metavar="K", default=S,
                   help="host threads for the fp64 decode (default: the cores the local workers "
                        "leave, at most 4)")
    g.add_argument("--worker-cpus", type=types.number, default=S,
                   help="CPUs each worker actor reserves (default: share the free CPUs, "
                        "min(1, free/n); 1 on a cluster with no free CPU yet, so that an "
                        "autoscaler adds nodes instead of packing actors onto one)")

    g = parser.add_argument_group("training")
    g.add_argument("--models", type=types.whole, metavar="M", default=S,
                   help="concurrent models trained round-robin, job t -> model t mod M; must be "
                        ">= T+1 (default T+1)")
    g.add_argument("--mode", choices=MODES, default=S,
                   help="concurrent: M independent models, exact SGD each; delayed: one model, "
                        "gradients applied T rounds late (APPROXIMATE, staleness T)")
    g.add_argument("--seed", type=types.whole, default=S,
                   help="seeds model init, job batches and injected delays (default 0)")
    g.add_argument("--model", default=S,
                   help="a model preset: logistic | mlp | cnn | resnet18 | resnet50 (CIFAR-shaped, "
                        "GroupNorm) | charlm (character transformer); default: the dataset's "
                        "(mlp; cifar: resnet18; text: charlm). Your own model: gcode.fit")
    g.add_argument("--dataset", choices=DATASET_NAMES, default=S,
                   help="a dataset preset: digits (scikit-learn's 8x8 digits, default); synthetic "
                        "(Gaussian blobs); cifar (3x32x32 images generated from their index: any "
                        "size, no memory); diabetes (regression, mean-squared error); text (the "
                        "bundled text, next-character prediction, for charlm)")
    g.add_argument("--num-samples", type=types.whole, default=S,
                   help="dataset size (digits, diabetes, text: a subset; synthetic, cifar: any)")
    g.add_argument("--eval-every", type=types.whole, metavar="K", default=S,
                   help="every K rounds, report every model's held-out loss (and accuracy for "
                        "classifiers) in the progress, --json and the run log")
    g.add_argument("--optimizer", choices=("sgd", "adam"), default=S, help="default adam")
    g.add_argument("--lr", type=types.number, default=S, help="learning rate (default 0.01)")
    g.add_argument("--batch-size", type=types.whole, default=S,
                   help="samples per job, i.e. per full gradient (default 256)")
    g.add_argument("--check-decode", action="store_true", default=S,
                   help="recompute every decoded gradient directly and report "
                        "max_decode_rel_error (costs one extra gradient per job)")
    g.add_argument("--no-pipeline", dest="pipeline", action="store_false", default=S,
                   help="never dispatch a round before the previous round's decodes and steps "
                        "(by default a round starts early when its inputs are final, e.g. with "
                        "--models T+2; results are the same either way)")
    g.add_argument("--dispatch", choices=DISPATCH, default=S,
                   help="when a worker gets its next round's tasks: 'round' (default) when the "
                        "round starts; 'arrival' as soon as its own results of this round "
                        "arrive, so it never idles until the round's cut (schemes "
                        f"{', '.join(DISPATCH_AT_ARRIVAL_SCHEMES)}; takes effect where a round "
                        "may start early, e.g. --models T+2; results are exact either way)")

    g = parser.add_argument_group("straggler injection")
    from ..stragglers.registry import describe_models
    g.add_argument("--inject", metavar="MODEL", default=S,
                   help="workers sleep per round following a delay model, with its parameters "
                        "(--inject-param; those without a default are required): "
                        + describe_models().replace("%", "%%"))
    g.add_argument("--inject-param", metavar="KEY=VALUE", action="append", type=_key_value,
                   default=S, help="a delay-model parameter, repeatable (e.g. base=0.05); every "
                                   "missing one is reported at once")
    g.add_argument("--inject-trace", metavar="PATH", default=S,
                   help="replay a CSV trace: worker i sleeps column i of row r (first n columns)")
    g.add_argument("--time-scale", type=types.number, default=S,
                   help="multiply injected times by this (e.g. 0.4 turns 0.7 s into 0.28 s)")
    g.add_argument("--inject-mode", choices=INJECT_MODES, default=S,
                   help="add: sleep the injected time after computing (round = compute + "
                        "injected; matches gcode simulate's load term); target: sleep only the "
                        "rest of it (default add)")

    g = parser.add_argument_group("checkpoint / resume")
    g.add_argument("--checkpoint-dir", metavar="DIR", default=S,
                   help="write the full run state (models, optimizers, scheme, decoder, RNGs) to "
                        "DIR/round-NNNNNNNN/ every --checkpoint-every rounds and when a stop "
                        "request ends the run; atomic (temp folder, fsync, rename), no pickle")
    g.add_argument("--checkpoint-every", type=types.whole, metavar="K", default=S,
                   help="rounds between checkpoints (default 10)")
    g.add_argument("--checkpoint-keep", type=types.whole, metavar="N", default=S,
                   help="newest complete checkpoints kept (default 2)")
    g.add_argument("--resume", metavar="DIR", default=S,
                   help="continue the run checkpointed in DIR (its newest checkpoint, or one "
                        "round-NNNNNNNN folder); the config is the checkpoint's, and flags may "
                        "change only logs, checkpoints, cluster placement/timeouts, "
                        "--check-decode; the final parameters equal an uninterrupted run's")

    g = parser.add_argument_group("output")
    g.add_argument("--log-jsonl", metavar="PATH", default=S,
                   help="write one JSON record per round (arrivals, stragglers, decodes, loss)")
    g.add_argument("--run-log", metavar="PREFIX", default=S,
                   help="write the telemetry run log PREFIX.pb and PREFIX.jsonl (every round's "
                        "plan and outcome; read it with gcode replay / gcode plot)")
    g.add_argument("--json", action="store_true", default=S,
                   help="print one final JSON object (runtime_s, rounds, waits, decoded_jobs, "
                        "final_loss, param_checksum, max_decode_rel_error, ...)")
    g.add_argument("--quiet", action="store_true", default=S, help="no progress bar")
    if "--monitor" not in parser._option_string_actions:
        try:  # --monitor HOST:PORT / --monitor-token: stream rounds to `gcode watch`
            from .runs import add_monitor_arguments
            add_monitor_arguments(parser)
        except ImportError:  # pragma: no cover - telemetry extras missing
            pass


def _pair_presets(base: TrainConfig, overrides: dict) -> None:
    """--model alone picks its dataset (resnet18: cifar, charlm: text) and --dataset alone its
    model (text: charlm, cifar: resnet18), unless the config file already set the other."""
    from ..train.presets import DATASETS
    model, dataset = overrides.get("train.model"), overrides.get("train.dataset")
    defaults = TrainConfig().train
    if model is not None and dataset is None and base.train.dataset == defaults.dataset:
        paired = [name for name, preset in DATASETS.items() if preset.default_model == model]
        if paired and defaults.dataset not in paired:
            overrides["train.dataset"] = paired[0]
    if dataset is not None and model is None and base.train.model == defaults.model:
        overrides["train.model"] = DATASETS[dataset].default_model


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then ``--config FILE``, then the flags that were given; validated."""
    given = vars(args)
    if given.get("config"):
        base = load_config(given["config"])
    elif given.get("resume"):  # the checkpoint's own config; train() checks what flags change
        from ..runtime.checkpoint import resume_config
        base = resume_config(given["resume"])
    else:
        base = TrainConfig()
    overrides: dict[str, Any] = {}
    for dest, dotted in FLAG_FIELDS.items():
        if dest in given and given[dest] is not None:
            overrides[dotted] = given[dest]
    new_scheme = overrides.get("scheme.name")
    if new_scheme is not None and new_scheme != base.scheme.name:
        # parameters from the file that the new scheme does not take are dropped
        for key in ("s", "B", "W", "lam"):
            if key not in SCHEME_PARAMS[new_scheme] and f"scheme.{key}" not in overrides:
                overrides[f"scheme.{key}"] = None
    _pair_presets(base, overrides)
    if "inject_param" in given:
        params = dict(base.inject.params)
        params.update(dict(given["inject_param"]))
        overrides["inject.params"] = params
    if "inject.trace" in overrides and base.inject.model is not None and "inject.model" not in overrides:
        overrides["inject.model"] = None
        overrides.setdefault("inject.params", {})
    if "inject.model" in overrides and base.inject.trace is not None and "inject.trace" not in overrides:
        overrides["inject.trace"] = None
    return with_overrides(base, overrides)


def format_summary(res: dict) -> str:
    params = ",".join(f"{k}={v}" for k, v in res["params"].items() if k != "gc_code")
    lines = [
        (f"{res['scheme']} ({params}) n={res['n']} T={res['delay_T']} load={res['load']:.4f} "
         f"models={res['models']} mode={res['mode']}"
         + (f"  [APPROXIMATE: {res['approximation']}]" if res["approximate"] else "")),
        (f"runtime {res['runtime_s']:.2f} s over {res['rounds']} rounds "
         f"(setup {res['setup_s']:.1f} s); decoded {res['decoded_jobs']}/{res['jobs']} jobs; "
         f"waits {res['waits']}; stragglers {res['stragglers']}; failures {len(res['failures'])}"
         + (f"; STOPPED: {res['stop_reason']}" if res.get("stopped") else "")),
        (f"coordinator overhead {1e3 * res['overhead_s_per_round']:.2f} ms/round "
         f"({1e3 * res['exposed_overhead_s_per_round']:.2f} ms not overlapped; "
         f"{res['pipelined_rounds']} rounds pipelined); "
         f"mean worker compute {1e3 * (res['compute_s_mean'] or 0):.2f} ms"),
        "final batch loss per model: " + ", ".join("-" if v is None else f"{v:.4f}"
                                                   for v in res["final_loss"]),
    ]
    if res.get("final_eval"):
        lines.append("held-out per model: " + ", ".join(
            f"loss {e['loss']:.4f}" + (f" acc {e['accuracy']:.3f}" if "accuracy" in e else "")
            for e in res["final_eval"]))
    if res.get("max_decode_rel_error") is not None:
        lines.append(f"max decode relative error {res['max_decode_rel_error']:.2e}")
    if res.get("resumed_from"):
        lines.append(f"resumed from {res['resumed_from']} (session {res['sessions']})")
    if res.get("checkpoint"):
        lines.append(f"last checkpoint {res['checkpoint']} ({len(res['checkpoints'])} written)")
    return "\n".join(lines)


def run_from_args(args: argparse.Namespace, pool=None) -> int:
    """Run ``gcode train`` from parsed flags: the config's presets through :func:`gcode.fit`;
    prints a summary or ``--json``. Returns 0. ``pool``: reuse running worker actors (tests)."""

    from ..api import fit, from_train_config
    from ..runtime.loop.jsonl_log import to_json
    from ..runtime.run import preset_workload_of
    from ..terminal import escape_lines
    from .runs import TOKEN_ENV
    cfg = config_from_args(args)
    workload = preset_workload_of(cfg)
    coding, scaling, run = from_train_config(cfg)
    run.monitor = getattr(args, "monitor", None)
    run.monitor_token = getattr(args, "monitor_token", None) or os.environ.get(TOKEN_ENV) or None
    quiet = getattr(args, "quiet", False)
    if not quiet:
        print(f"gcode train: starting {cfg.cluster.workers} workers "
              f"({'local Ray' if not cfg.cluster.address else cfg.cluster.address})...",
              file=sys.stderr)
    from ..runtime.cluster.watchdog import watching
    own_ray = pool is None and not (cfg.cluster.address or os.environ.get("RAY_ADDRESS"))
    with watching(own_ray, cfg.checkpoint.dir):  # a dying local Ray node: one line, exit 1
        result = fit(workload.model_fn, workload.loss_fn, workload.dataset_fn,
                     workload.optimizer_fn, coding=coding, scaling=scaling, run=run,
                     collate_fn=workload.collate_fn, eval_dataset_fn=workload.eval_dataset_fn,
                     metric_fn=workload.metric_fn, progress=not quiet, pool=pool).metrics
    if getattr(args, "json", False):
        print(to_json(result))
    else:
        print(escape_lines(format_summary(result)))
    return 0


__all__ = [
    "FAULT_KINDS",
    "add_train_arguments",
    "config_from_args",
    "format_summary",
    "parse_value",
    "run_from_args",
]
