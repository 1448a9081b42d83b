"""``gcode train``: ``add_train_arguments(parser)``, ``config_from_args(args)``,
``run_from_args(args)``.

Every setting's flag is derived from its declaration (:mod:`gcode.cli.flags`), one argument group
per config-file section. Precedence: built-in defaults < ``--config FILE`` (TOML or YAML) <
flags. Every flag defaults to "not given", so a flag only overrides what it names; the result is
validated once, and a bad value is reported with its config field (``scheme.B: must be >= 1,
got 0``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..config import BY_API, SETTINGS, TrainConfig, load_config, speaking, with_overrides
from ..config.tables import scheme_parameters
from . import types
from .flags import SettingsHelpFormatter, add_setting, given

EXAMPLES = """\
examples:
  gcode train                                   # auto (uncoded or GC, one model), 4 workers, digits MLP
  gcode train --scheme gc --s 1 --workers 4 --jobs 20 --json
  gcode train --inject bursty --inject-param B=1 --inject-param W=2 --inject-param lam=2 \\
              --inject-param base=0.02 --inject-param slowdown=5
  gcode train --workers 8 --scheme msgc --B 1 --W 2 --lam 3 --jobs 29 \\
              --inject-trace gcode/data/lambda-cnn-w256-r30-canada.csv --time-scale 0.4
  gcode train --config examples/digits-msgc.toml --lr 0.02 --log-jsonl runs/r1.jsonl
  gcode train --scheme gc --s 1 --jobs 400 --checkpoint-dir runs/ck --checkpoint-every 20
  gcode train --resume runs/ck                  # continue from the newest checkpoint in runs/ck
"""

#: config-file section -> the title of its argument group
GROUPS = {"scheme": "scheme (as in gcode simulate)", "policy": "round ending (as in gcode simulate)",
          "cluster": "cluster", "train": "training", "inject": "straggler injection",
          "checkpoint": "checkpoint / resume", "log": "output", None: "live monitor (gRPC)"}


def parse_value(raw: str) -> Any:
    """'3' -> 3, '0.5' / '1e-3' -> float, 'true'/'false' -> bool, anything else a string (so
    '1_0', 'nan' and 'inf' stay text, and the field they set names them as wrong)."""
    return types.scalar(raw)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every ``gcode train`` flag to ``parser`` (all default to 'not given')."""
    if parser.epilog is None:
        parser.epilog = EXAMPLES
    parser.formatter_class = SettingsHelpFormatter
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="TOML or YAML file with [scheme] [policy] [cluster] [train] [inject] "
                             "[log] [checkpoint] tables and [[faults]]; flags override it")
    groups = {section: parser.add_argument_group(title) for section, title in GROUPS.items()}
    for s in SETTINGS:
        action = add_setting(groups[s.section], s.api)
        if s.api == "run.inject.model":
            from ..stragglers.registry import describe_models
            action.help += ": " + describe_models().replace("%", "%%")
    out = groups["log"]
    out.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                     help="print one final JSON object (runtime_s, rounds, waits, decoded_jobs, "
                          "final_loss, param_checksum, max_decode_rel_error, ...)")
    out.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                     help="no progress bar")


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
    if dataset in DATASETS and model is None and base.train.model == defaults.model:
        overrides["train.model"] = DATASETS[dataset].default_model  # (an unknown one: validate)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then ``--config FILE``, then the flags that were given; validated."""
    flags = vars(args)
    if flags.get("config"):
        base = load_config(flags["config"])
    elif flags.get("run.checkpoint.resume"):  # its own config; the run checks what flags change
        from ..runtime.checkpoint import resume_config
        base = resume_config(flags["run.checkpoint.resume"])
    else:
        base = TrainConfig()
    overrides: dict[str, Any] = {}
    for path, value in given(args).items():
        s = BY_API[path]
        if s.file is None:
            continue  # the monitor: not a setting of the run's config
        if s.kind is dict:  # KEY=VALUE flags add to the file's table
            value = {**getattr(getattr(base, s.section), s.key), **dict(value)}
        overrides[s.file] = value
    new_scheme = overrides.get("scheme.name")
    if new_scheme is not None and new_scheme != base.scheme.name:
        # parameters from the file that the new scheme does not take are dropped
        for key in ("s", "B", "W", "lam"):
            if key not in scheme_parameters(new_scheme) and f"scheme.{key}" not in overrides:
                overrides[f"scheme.{key}"] = None
    _pair_presets(base, overrides)
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
         f"models={res['models']} steps_per_model={res.get('steps_per_model', '-')} mode={res['mode']}"
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

    with speaking("cli"):
        return _run(args, pool)


def monitor_token(args: argparse.Namespace) -> str | None:
    """``--monitor-token``, else $GCODE_MONITOR_TOKEN (a flag shows in process listings)."""
    from .runs import TOKEN_ENV
    return given(args).get("run.monitor_token") or os.environ.get(TOKEN_ENV) or None


def _run(args: argparse.Namespace, pool) -> int:
    from ..api import fit, from_train_config
    from ..runtime.loop.jsonl_log import to_json
    from ..runtime.run import preset_workload_of
    from ..terminal import escape_lines
    cfg = config_from_args(args)
    workload = preset_workload_of(cfg)
    coding, scaling, run = from_train_config(cfg)
    run.monitor = given(args).get("run.monitor")
    run.monitor_token = monitor_token(args)
    quiet = getattr(args, "quiet", False)  # else fit says what it starts, and shows progress
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
    return _signalled(result)


def _signalled(result: dict) -> int:
    """0, or for a run a SIGTERM or SIGINT stopped (:mod:`gcode.runtime.signals`): one line
    saying where it stopped and how to go on, and 128 + the signal's number."""
    import signal
    if not result.get("signal"):
        return 0
    if result.get("checkpoint"):
        from pathlib import Path

        from ..terminal import escape
        folder = escape(Path(result["checkpoint"]).parent)
        after = f"checkpoint {escape(result['checkpoint'])}; gcode train --resume {folder} continues"
    else:
        after = "no checkpoint (set --checkpoint-dir to be able to continue a stopped run)"
    print(f"gcode: stopped by {result['signal']} after {result['rounds']} of the run's rounds; "
          f"{after}", file=sys.stderr)
    return 128 + signal.Signals[result["signal"]].value


__all__ = ["add_train_arguments", "config_from_args", "format_summary", "monitor_token",
           "parse_value", "run_from_args"]
