"""Validation of a :class:`~gcode.config.TrainConfig`: every field against its declaration
(type, bounds, choices: :func:`gcode.config.spec.check_value`), then the rules that tie fields
together. Each error is a :class:`ConfigError` naming the file key (``scheme.W: must be > B=1,
got 1``); ``gcode.fit`` renames it to its own field. Imports neither Ray nor torch at import
time (the dataset and optimizer names are read from gcode.train when a config is checked).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from .address import endpoint
from .registry import SECTIONS
from .settings import MAX_DELAY_TABLE_BYTES, Fault
from .spec import ConfigError, check_value, spec_of
from .spelling import front, how_to_set
from .tables import arrival_schemes, scheme_delay, scheme_parameters, scheme_params


def check_fields(cfg) -> None:
    """Every field of every section against its declaration."""
    for name, cls in SECTIONS.items():
        section = getattr(cfg, name)
        if not isinstance(section, cls):
            raise ConfigError(name, f"must be a {cls.__name__}, got {type(section).__name__}")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            check_value(f"{name}.{f.name}", getattr(section, f.name), hints[f.name], spec_of(f))


def validate(cfg, paths: bool = True) -> None:
    """Check every field and the rules between them; raise ConfigError naming the field.
    ``paths=False`` skips whether the log files can be written (for a config that flags will
    still change, such as a checkpoint's own)."""
    check_fields(cfg)
    if cfg.cluster.address is not None:
        endpoint(cfg.cluster.address)  # its form; whether anything answers is checked at start
    delay = _scheme_rules(cfg.scheme, cfg.cluster.workers, cfg.train)
    _policy_rules(cfg.scheme, cfg.policy)
    _train_rules(cfg, delay)
    _inject_rules(cfg.inject)
    _log_rules(cfg.log, paths)
    _checkpoint_rules(cfg.checkpoint)
    _fault_rules(cfg.faults, cfg.cluster.workers)


def _scheme_rules(sc, n: int, train) -> int:
    """The scheme's parameters fit n; returns its delay T (for auto, the largest the tuner may
    switch to under the [train] section's models and mode)."""
    if sc.load_slope is not None and sc.name != "auto":
        raise ConfigError("scheme.load_slope", f"only applies to scheme 'auto', not {sc.name!r}")
    accepted = scheme_parameters(sc.name)
    for key in ("s", "B", "W", "lam"):
        if getattr(sc, key) is not None and key not in accepted:
            takes = ", ".join(k for k in accepted if k != "gc_code") or "no parameters"
            raise ConfigError(f"scheme.{key}", f"is not a parameter of scheme {sc.name!r} "
                                               f"(it takes: {takes})")
    params = scheme_params(sc, n)
    if "s" in params and not 0 <= params["s"] < n:
        raise ConfigError("scheme.s", f"must satisfy 0 <= s < workers={n}, got {params['s']}")
    if "B" in params:
        B, W, lam = params["B"], params["W"], params["lam"]
        if W <= B:
            raise ConfigError("scheme.W", f"must be > B={B}, got {W}")
        if not 0 <= lam <= n:
            raise ConfigError("scheme.lam", f"must satisfy 0 <= lam <= workers={n}, got {lam}")
    try:
        delay = scheme_delay(sc, n, train)
    except ValueError as exc:
        raise ConfigError("scheme", str(exc)) from None
    table = (sc.jobs + delay) * n * 8
    if table > MAX_DELAY_TABLE_BYTES:
        raise ConfigError("scheme.jobs", f"{sc.jobs} jobs x {n} workers need a {table / 2**30:.1f} "
                                         f"GiB table of per-round delays (at most "
                                         f"{MAX_DELAY_TABLE_BYTES >> 30} GiB); lower scheme.jobs")
    return delay


def _policy_rules(sc, pc) -> None:
    if sc.name == "auto" and pc.name not in (None, "paper", "partial"):
        raise ConfigError("policy.name", f"scheme 'auto' picks how rounds end itself: leave it "
                                         f"unset or 'partial' (every policy), or set 'paper' "
                                         f"(the paper's cut only); got {pc.name!r}")
    if pc.name == "deadline" and pc.deadline is None:
        raise ConfigError("policy.deadline", f"is required with policy 'deadline' "
                                             f"({how_to_set('policy.deadline', placeholder='SECONDS')})")


def _train_rules(cfg, delay: int) -> None:
    sc, tc = cfg.scheme, cfg.train
    if tc.exact_blocks and tc.batch_size % tc.exact_blocks:
        raise ConfigError("train.exact_blocks", f"must divide train.batch_size={tc.batch_size} (each "
                                                f"job's batch is cut into whole blocks), got "
                                                f"{tc.exact_blocks}")
    if tc.num_samples is not None and tc.batch_size > tc.num_samples:
        raise ConfigError("train.batch_size", f"must be <= train.num_samples={tc.num_samples}, "
                                              f"got {tc.batch_size}")
    if tc.models is not None:
        if tc.mode == "delayed" and tc.models != 1:
            raise ConfigError("train.models", f"mode 'delayed' trains one model; got {tc.models}")
        if tc.mode == "concurrent" and tc.models < delay + 1:
            raise ConfigError("train.models", f"must be >= T+1 = {delay + 1} for scheme "
                                              f"{sc.name} {scheme_params(sc, cfg.cluster.workers)} "
                                              f"(job t trains model t mod M and is decoded up to "
                                              f"T={delay} rounds later); got {tc.models}, or use "
                                              f"mode 'delayed'")
        useful = max(sc.jobs, delay + 2)
        if tc.models > useful:
            raise ConfigError("train.models", f"must be <= max(scheme.jobs, T+2) = {useful}: job t "
                                              f"trains model t mod M, so models beyond the jobs "
                                              f"never train (T+2 lets rounds pipeline); got "
                                              f"{tc.models}")
    if tc.dispatch == "arrival":
        ok = arrival_schemes()
        if sc.name not in ok:
            raise ConfigError("train.dispatch", f"'arrival' needs a scheme whose workers' next "
                                                f"tasks follow their own arrivals "
                                                f"({', '.join(ok)}); got scheme {sc.name!r}")
        if not tc.pipeline or tc.mode != "concurrent":
            raise ConfigError("train.dispatch", "'arrival' starts round r+1 early, which needs "
                                                "train.pipeline and mode 'concurrent'")
    if cfg.cluster.zero and cfg.cluster.data_plane != "collective":
        raise ConfigError("cluster.zero", "1 shards the optimizers of the collective plane's "
                                          "replicas: it needs cluster.data_plane = collective")
    if "lr" in tc.optimizer_params:
        raise ConfigError("train.optimizer_params.lr", "set the learning rate with train.lr")


def _inject_rules(ic) -> None:
    if ic.model is not None and ic.trace is not None:
        raise ConfigError("inject.trace", "give either inject.model or inject.trace, not both")
    if ic.params and ic.model is None:
        raise ConfigError("inject.params", f"needs inject.model "
                                           f"({how_to_set('inject.model', placeholder='MODEL')})")
    if ic.model is not None:
        from ..stragglers import make_delay_model
        try:
            make_delay_model(ic.model, **ic.params)
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError("inject.params", str(exc)) from None
    if ic.trace is not None and not Path(ic.trace).is_file():
        raise ConfigError("inject.trace", f"no such file: {ic.trace}")


def _log_rules(log, paths: bool) -> None:
    """Log files that cannot be written fail here, before Ray starts; so do two settings that
    name one file (the run log writes PREFIX.pb and PREFIX.jsonl)."""
    from ..paths import output_file_problem, run_log_paths, run_log_problem
    for where, value, check in (("log.jsonl", log.jsonl, output_file_problem),
                                ("log.run_log", log.run_log, run_log_problem)):
        problem = None if value is None or not paths else check(value)
        if problem is not None:
            raise ConfigError(where, problem)
    if log.jsonl is not None and log.run_log is not None:
        mine = Path(log.jsonl).resolve()
        for path in run_log_paths(log.run_log):
            if path.resolve() == mine:
                raise ConfigError("log.run_log", f"writes {path}, the file log.jsonl names: the two "
                                                 f"logs would overwrite each other; give them "
                                                 f"different paths")


def _checkpoint_rules(ck) -> None:
    from ..paths import output_dir_problem
    if ck.dir is not None:
        if not ck.dir.strip():
            raise ConfigError("checkpoint.dir", "must be a non-empty path")
        if Path(ck.dir).exists() and not Path(ck.dir).is_dir():
            raise ConfigError("checkpoint.dir", f"{ck.dir} exists and is not a directory")
        # (whether it is writable is probed when the run starts: a resumed config may name a
        # directory that has since become read-only and that the run then replaces)
        problem = output_dir_problem(ck.dir, writable=False)
        if problem is not None:
            raise ConfigError("checkpoint.dir", problem)
    if ck.resume is not None:
        if not ck.resume.strip():
            raise ConfigError("checkpoint.resume", "must be a non-empty path")
        if not Path(ck.resume).is_dir():
            raise ConfigError("checkpoint.resume", f"no such checkpoint directory: {ck.resume}")


def _fault_rules(faults, n: int) -> None:
    hints = typing.get_type_hints(Fault)
    for k, f in enumerate(faults):
        if not isinstance(f, Fault):
            raise ConfigError(f"faults[{k}]", f"must be a Fault, got {f!r}")
        for fld in dataclasses.fields(Fault):
            check_value(f"faults[{k}].{fld.name}", getattr(f, fld.name), hints[fld.name],
                        spec_of(fld))
        if f.worker >= n:
            raise ConfigError(f"faults[{k}].worker", f"must be in [0, workers={n}), got {f.worker}")


def check_injected_delays(table, round_timeout_s: float) -> None:
    """ConfigError naming inject.time_scale when in some round every worker sleeps longer than
    a round may last (``table``: the (rounds, n) injected seconds): that round could only time
    out."""
    slowest = table.min(axis=1) if table.size else table
    late = [r for r, s in enumerate(slowest) if not s <= round_timeout_s]
    if late:
        raise ConfigError("inject.time_scale", f"in round {late[0]} every worker sleeps at least "
                                               f"{slowest[late[0]]:.3g} s (the injected delays x "
                                               f"inject.time_scale), longer than "
                                               f"cluster.round_timeout_s = {round_timeout_s:g}: the "
                                               f"round could only time out; lower "
                                               f"inject.time_scale or raise cluster.round_timeout_s")


def check_memory(cfg, model_fn, coordinator_copies: int) -> None:
    """Before Ray starts: the coordinator's ``coordinator_copies`` models and the replicas of
    this machine's CPU workers fit in its memory (ConfigError naming the model's setting: the
    preset's parameters on the command line, ``model_fn`` in Python)."""
    import os

    from ..train.footprint import memory_problem
    cc = cfg.cluster
    local = cc.address is None and not os.environ.get("RAY_ADDRESS") and cc.gpus_per_worker == 0
    problem = memory_problem(model_fn, coordinator_copies + (cc.workers if local else 0))
    if problem is not None:
        raise ConfigError("train.model_params" if front() == "cli" else "model_fn", problem)


__all__ = ["check_fields", "check_injected_delays", "check_memory", "validate"]
