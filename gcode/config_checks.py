"""The one place where a :class:`gcode.config.TrainConfig` is checked: every field's type and
range and the cross-field rules, each error a :class:`gcode.config.ConfigError` naming the
dotted field (``scheme.B: must be >= 1, got 0``). Imports neither Ray nor torch at import time.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import (
    COORDINATOR_DEVICES,
    DATASET_NAMES,
    DISPATCH,
    DISPATCH_AT_ARRIVAL_SCHEMES,
    FAULT_KINDS,
    GC_CODES,
    INJECT_MODES,
    MAX_DELAY_TABLE_BYTES,
    MAX_JOBS,
    MAX_WORKERS,
    MODES,
    PLACEMENTS,
    POLICY_NAMES,
    PREFETCH,
    SCHEME_NAMES,
    SCHEME_PARAMS,
    SECTIONS,
    TRANSPORTS,
    ConfigError,
    Fault,
    TrainConfig,
    scheme_params,
)


def type_hints(cls) -> dict:
    return typing.get_type_hints(cls)


def check_type(where: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a simple annotation; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", ())):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return check_type(where, value, inner[0])
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(where, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(where, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(where, f"must be a string, got {value!r}")
        return value
    if hint is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"must be a table/mapping, got {value!r}")
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ConfigError(where, f"keys must be strings, got {bad[0]!r}")
        return dict(value)
    return value


def auto_max_delay() -> int:
    """The largest delay T the online tuner (scheme 'auto') may switch to."""
    from .sim.online import OnlineConfig
    return OnlineConfig().max_delay


# ---- validation: the one place ------------------------------------------------------------
def _positive(where: str, value, allow_none=False, integer=False):
    if value is None and allow_none:
        return
    if integer:
        check_type(where, value, int)
        if value < 1:
            raise ConfigError(where, f"must be >= 1, got {value}")
        return
    check_type(where, value, float)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(where, f"must be a positive finite number, got {value}")


def _choice(where: str, value, choices):
    if value not in choices:
        raise ConfigError(where, f"must be one of {', '.join(choices)}; got {value!r}")


def validate(cfg: TrainConfig, paths: bool = True) -> None:
    """Check every field and the cross-field rules; raise ConfigError naming the field.
    ``paths=False`` skips whether the log files can be written (for a config that flags will
    still change, such as a checkpoint's own)."""
    for name, cls in SECTIONS.items():
        section = getattr(cfg, name)
        if not isinstance(section, cls):
            raise ConfigError(name, f"must be a {cls.__name__}, got {type(section).__name__}")
        hints = type_hints(cls)
        for f in dataclasses.fields(cls):
            check_type(f"{name}.{f.name}", getattr(section, f.name), hints[f.name])

    sc, pc, cc, tc, ic = cfg.scheme, cfg.policy, cfg.cluster, cfg.train, cfg.inject
    # cluster
    _positive("cluster.workers", cc.workers, integer=True)
    if cc.workers > MAX_WORKERS:
        raise ConfigError("cluster.workers", f"must be <= {MAX_WORKERS}, got {cc.workers}")
    _positive("cluster.num_cpus", cc.num_cpus, allow_none=True, integer=True)
    _positive("cluster.worker_cpus", cc.worker_cpus, allow_none=True)
    _choice("cluster.placement", cc.placement, PLACEMENTS)
    _choice("cluster.transport", cc.transport, TRANSPORTS)
    _choice("cluster.prefetch", cc.prefetch, PREFETCH)
    if cc.address is not None:
        from .runtime.connect import endpoint
        endpoint(cc.address)  # its form only; whether anything answers is checked at start
    if cc.max_restarts < 0:
        raise ConfigError("cluster.max_restarts", f"must be >= 0, got {cc.max_restarts}")
    _positive("cluster.round_timeout_s", cc.round_timeout_s)
    if not (math.isfinite(cc.gpus_per_worker) and cc.gpus_per_worker >= 0):
        raise ConfigError("cluster.gpus_per_worker", f"must be >= 0, got {cc.gpus_per_worker}")
    _choice("cluster.coordinator_device", cc.coordinator_device, COORDINATOR_DEVICES)
    _choice("cluster.decode_device", cc.decode_device, COORDINATOR_DEVICES)
    _positive("cluster.decode_threads", cc.decode_threads, allow_none=True, integer=True)
    _positive("cluster.startup_timeout_s", cc.startup_timeout_s)
    if cc.retry_backoff_s < 0:
        raise ConfigError("cluster.retry_backoff_s", f"must be >= 0, got {cc.retry_backoff_s}")
    n = cc.workers

    # scheme
    _choice("scheme.name", sc.name, SCHEME_NAMES)
    _positive("scheme.jobs", sc.jobs, integer=True)
    if sc.jobs > MAX_JOBS:
        raise ConfigError("scheme.jobs", f"must be <= {MAX_JOBS}, got {sc.jobs}")
    if sc.gc_code is not None:
        _choice("scheme.gc_code", sc.gc_code, GC_CODES)
    if sc.auto_load_slope is not None:
        if sc.name != "auto":
            raise ConfigError("scheme.auto_load_slope", f"only applies to scheme 'auto', not {sc.name!r}")
        if not (math.isfinite(sc.auto_load_slope) and sc.auto_load_slope >= 0):
            raise ConfigError("scheme.auto_load_slope", f"must be >= 0, got {sc.auto_load_slope}")
    accepted = SCHEME_PARAMS[sc.name]
    for key in ("s", "B", "W", "lam"):
        value = getattr(sc, key)
        if value is not None and key not in accepted:
            takes = ", ".join(k for k in accepted if k != "gc_code") or "no parameters"
            raise ConfigError(f"scheme.{key}", f"is not a parameter of scheme {sc.name!r} "
                                               f"(it takes: {takes})")
    params = scheme_params(sc, n)
    if "s" in params and not 0 <= params["s"] < n:
        raise ConfigError("scheme.s", f"must satisfy 0 <= s < workers={n}, got {params['s']}")
    if "B" in params:
        B, W, lam = params["B"], params["W"], params["lam"]
        if B < 1:
            raise ConfigError("scheme.B", f"must be >= 1, got {B}")
        if W <= B:
            raise ConfigError("scheme.W", f"must be > B={B}, got {W}")
        if not 0 <= lam <= n:
            raise ConfigError("scheme.lam", f"must satisfy 0 <= lam <= workers={n}, got {lam}")
    probe_delay = auto_max_delay() if sc.name == "auto" else None
    if probe_delay is None:
        try:
            from .codes import make_scheme
            probe_delay = make_scheme(sc.name, n=n, jobs=sc.jobs, **params).delay
        except ValueError as exc:
            raise ConfigError("scheme", str(exc)) from None

    table = (sc.jobs + probe_delay) * n * 8
    if table > MAX_DELAY_TABLE_BYTES:
        raise ConfigError("scheme.jobs", f"{sc.jobs} jobs x {n} workers need a {table / 2**30:.1f} GiB "
                                         f"table of per-round delays (at most "
                                         f"{MAX_DELAY_TABLE_BYTES >> 30} GiB); lower scheme.jobs")

    # policy
    _choice("policy.name", pc.name, POLICY_NAMES)
    if sc.name == "auto" and pc.name not in ("paper", "partial"):
        raise ConfigError("policy.name", f"scheme 'auto' ends rounds itself with the paper cut and "
                                         f"the paper or partial fallback; got {pc.name!r}")
    _positive("policy.mu", pc.mu)
    _positive("policy.gap", pc.gap)
    if pc.name == "deadline" and pc.deadline_s is None:
        raise ConfigError("policy.deadline_s", "is required with policy 'deadline' (--deadline SECONDS)")
    _positive("policy.deadline_s", pc.deadline_s, allow_none=True)

    # train
    _choice("train.mode", tc.mode, MODES)
    _positive("train.batch_size", tc.batch_size, integer=True)
    _positive("train.num_samples", tc.num_samples, allow_none=True, integer=True)
    _positive("train.lr", tc.lr)
    if tc.seed < 0:
        raise ConfigError("train.seed", f"must be >= 0, got {tc.seed}")
    if tc.num_samples is not None and tc.batch_size > tc.num_samples:
        raise ConfigError("train.batch_size", f"must be <= train.num_samples={tc.num_samples}, "
                                              f"got {tc.batch_size}")
    if tc.models is not None:
        _positive("train.models", tc.models, integer=True)
        if tc.mode == "concurrent" and tc.models < probe_delay + 1:
            raise ConfigError("train.models", f"must be >= T+1 = {probe_delay + 1} for scheme "
                                              f"{sc.name} {params} (job t trains model t mod M and "
                                              f"is decoded up to T={probe_delay} rounds later); "
                                              f"got {tc.models}, or use mode 'delayed'")
        if tc.mode == "delayed" and tc.models != 1:
            raise ConfigError("train.models", f"mode 'delayed' trains one model; got {tc.models}")
    _choice("train.dataset", tc.dataset, DATASET_NAMES)
    _choice("train.dispatch", tc.dispatch, DISPATCH)
    if tc.dispatch == "arrival":
        if sc.name not in DISPATCH_AT_ARRIVAL_SCHEMES:
            raise ConfigError("train.dispatch", f"'arrival' needs a scheme whose workers' next "
                                                f"tasks follow their own arrivals "
                                                f"({', '.join(DISPATCH_AT_ARRIVAL_SCHEMES)}); "
                                                f"got scheme {sc.name!r}")
        if not tc.pipeline or tc.mode != "concurrent":
            raise ConfigError("train.dispatch", "'arrival' starts round r+1 early, which needs "
                                                "train.pipeline and mode 'concurrent'")
    _positive("train.eval_every", tc.eval_every, allow_none=True, integer=True)
    if tc.optimizer not in ("sgd", "adam"):
        raise ConfigError("train.optimizer", f"must be one of sgd, adam; got {tc.optimizer!r}")
    if "lr" in tc.optimizer_params:
        raise ConfigError("train.optimizer_params.lr", "set the learning rate with train.lr")

    # inject
    _choice("inject.mode", ic.mode, INJECT_MODES)
    _positive("inject.time_scale", ic.time_scale)
    if ic.seed is not None and ic.seed < 0:
        raise ConfigError("inject.seed", f"must be >= 0, got {ic.seed}")
    if ic.model is not None and ic.trace is not None:
        raise ConfigError("inject.trace", "give either inject.model or inject.trace, not both")
    if ic.params and ic.model is None:
        raise ConfigError("inject.params", "needs inject.model (--inject MODEL)")
    if ic.model is not None:
        from .stragglers import MODELS, make_delay_model
        _choice("inject.model", ic.model, tuple(MODELS))
        try:
            make_delay_model(ic.model, **ic.params)
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError("inject.params", str(exc)) from None
    if ic.trace is not None and not Path(ic.trace).is_file():
        raise ConfigError("inject.trace", f"no such file: {ic.trace}")

    # log: files that cannot be written fail here, before Ray starts
    from .paths import output_dir_problem, output_file_problem, run_log_problem
    for where, value, check in (("log.jsonl", cfg.log.jsonl, output_file_problem),
                                ("log.run_log", cfg.log.run_log, run_log_problem)):
        problem = None if value is None or not paths else check(value)
        if problem is not None:
            raise ConfigError(where, problem)

    # checkpoint
    ck = cfg.checkpoint
    if ck.dir is not None and not ck.dir.strip():
        raise ConfigError("checkpoint.dir", "must be a non-empty path")
    if ck.dir is not None and Path(ck.dir).exists() and not Path(ck.dir).is_dir():
        raise ConfigError("checkpoint.dir", f"{ck.dir} exists and is not a directory")
    if ck.dir is not None and output_dir_problem(ck.dir, writable=False) is not None:
        # (whether it is writable is probed when the run starts: a resumed config may name a
        # directory that has since become read-only and that the run then replaces)
        raise ConfigError("checkpoint.dir", output_dir_problem(ck.dir, writable=False))
    _positive("checkpoint.every", ck.every, integer=True)
    _positive("checkpoint.keep", ck.keep, integer=True)
    if ck.resume is not None:
        if not ck.resume.strip():
            raise ConfigError("checkpoint.resume", "must be a non-empty path")
        if not Path(ck.resume).is_dir():
            raise ConfigError("checkpoint.resume", f"no such checkpoint directory: {ck.resume}")

    # faults
    for k, f in enumerate(cfg.faults):
        if not isinstance(f, Fault):
            raise ConfigError(f"faults[{k}]", f"must be a Fault, got {f!r}")
        if f.round < 0:
            raise ConfigError(f"faults[{k}].round", f"must be >= 0, got {f.round}")
        if not 0 <= f.worker < n:
            raise ConfigError(f"faults[{k}].worker", f"must be in [0, workers={n}), got {f.worker}")
        _choice(f"faults[{k}].kind", f.kind, FAULT_KINDS)
