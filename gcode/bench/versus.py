"""``gcode bench versus``: torch DDP and gcode's schemes side by side on the same stragglers.

Every row trains the same model from the same seed on the same job batches for the same number of
full-batch steps (jobs). A scheme with delay T trains M >= T+1 models round-robin, so each model
gets jobs/M of the steps: such a row is compared with DDP training the same M models round-robin for
the same steps per model (a DDP row per M: ``ddp``, ``ddp-m2``, ...), and every row says ``models``
and ``steps_per_model``; ``vs_ddp`` is the same-M DDP row's wall time over the row's. One-model and
M-model rows are never ranked together (``best_exact`` is the best one-model row;
``best_exact_by_models`` has each M's). Injected delays come from one (rounds, workers) table shared
by every row: DDP rank w sleeps table[t, w] in step t after computing, before its allreduce; gcode
worker w sleeps table[r, w] in round r after computing, before it sends (``inject.mode = add``).

The default injection is bursty (B, W, λ) = (1, 2, 2) with ``base`` three times the model's
measured compute time per round, so a straggler costs about 9 computes and the others 3
(``straggler_steps`` sets the three; ``--time-scale auto`` scales a trace so that a round's
slowest worker trails its median by ``straggler_steps`` steps).

Both sides are timed warm. DDP computes a few untimed steps before its timed ones; gcode runs
one untimed warm-up run (``WARMUP_JOBS`` uncoded jobs, no injection) on the shared workers
before the first row, so that no row pays the workers' first passes, the first mappings of
shared memory or the coordinator's first GPU calls.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import arrival_schemes

#: name -> (model preset, model params, dataset preset, dataset params)
MODELS = {
    "mlp": ("mlp", {"hidden": 256}, "synthetic", {"num_features": 784, "num_classes": 10}),
    "mlp-wide": ("mlp", {"hidden": 4096}, "synthetic", {"num_features": 784, "num_classes": 10}),
    "resnet18": ("resnet18", {}, "cifar", {}),
    "resnet50": ("resnet50", {}, "cifar", {}),
}
#: row name -> (scheme section, policy section). M-SGC's rows differ in how a round ends:
#: ``earliest`` declares the last workers of a round stragglers even when they trail by a hair,
#: which spends the (B, W, λ) window's budget of stragglers, so a later round with a real
#: straggler must wait for it; ``partial`` at μ = 0.1 cuts whoever trails the fastest by 10%;
#: ``gap`` cuts only after a quiet gap (docs/SIMULATOR.md, "Round-ending policies"). ``msgc-lam3-gap``
#: tolerates one straggler more than the injection per window, at the same load with FR codes
#: at n = 8, so that one worker slowed by the machine itself does not exhaust the budget.
#: ``msgc-cyclic-gap`` is ``msgc-gap`` with the cyclic code: load 0.1875 against FR's 0.2 at
#: n = 8 (96 samples a worker a round against 102-103 of a 512 batch), for models whose compute
#: dwarfs the decode, which costs a small solve per job instead of FR's sums.
SCHEMES = {
    "uncoded": ({"name": "uncoded"}, {"name": "paper"}),
    "gc-s1": ({"name": "gc", "s": 1, "gc_code": "fr"}, {"name": "paper"}),
    "gc-s2": ({"name": "gc", "s": 2, "gc_code": "fr"}, {"name": "paper"}),
    "gc-s1-earliest": ({"name": "gc", "s": 1, "gc_code": "fr"}, {"name": "earliest"}),
    "gc-s2-earliest": ({"name": "gc", "s": 2, "gc_code": "fr"}, {"name": "earliest"}),
    "msgc": ({"name": "msgc", "B": 1, "W": 2, "lam": 2, "gc_code": "fr"}, {"name": "paper"}),
    "msgc-earliest": ({"name": "msgc", "B": 1, "W": 2, "lam": 2, "gc_code": "fr"}, {"name": "earliest"}),
    "msgc-partial": ({"name": "msgc", "B": 1, "W": 2, "lam": 2, "gc_code": "fr"},
                     {"name": "partial", "mu": 0.1}),
    "msgc-gap": ({"name": "msgc", "B": 1, "W": 2, "lam": 2, "gc_code": "fr"},
                 {"name": "gap", "gap": 0.05}),
    "msgc-lam3-gap": ({"name": "msgc", "B": 1, "W": 2, "lam": 3, "gc_code": "fr"},
                      {"name": "gap", "gap": 0.05}),
    "msgc-cyclic-gap": ({"name": "msgc", "B": 1, "W": 2, "lam": 2, "gc_code": "cyclic"},
                        {"name": "gap", "gap": 0.05}),
    "srsgc": ({"name": "srsgc", "B": 1, "W": 2, "lam": 2, "gc_code": "fr"}, {"name": "paper"}),
    "auto": ({"name": "auto"}, {"name": "partial"}),
}
#: a row name with this suffix runs its base row with M = T+2 models: then round r+1 never
#: waits for round r's decodes and steps, which overlap the workers' compute (pipelining)
PIPELINED = "-pipelined"
#: this suffix runs the base row pipelined (M = T+2) with dispatch at arrival: a worker gets
#: round r+1's tasks when its own round-r results arrive, not at round r's cut
ARRIVAL = "-arrival"
#: jobs of the untimed uncoded run that warms the workers and the coordinator before any row
WARMUP_JOBS = 4
DEFAULT_SCHEMES = ("uncoded", "gc-s2", "gc-s2-earliest", "msgc", "msgc-earliest", "msgc-gap",
                   "auto", "gc-s2-earliest-arrival", "msgc-gap-arrival")


ROW_NAMES = (*SCHEMES, *(f"{s}{PIPELINED}" for s in SCHEMES if s != "auto"),
             *(f"{s}{ARRIVAL}" for s, (scheme, _) in SCHEMES.items()
               if scheme["name"] in arrival_schemes()))


def ddp_row_name(models: int) -> str:
    """The DDP row that trains ``models`` models: ``ddp`` for one, ``ddp-mM`` for M."""
    return "ddp" if models == 1 else f"ddp-m{models}"


def row_models(name: str, workers: int) -> int:
    """M, the models row ``name`` trains with ``workers`` workers: its own ``models``, else
    T+1 (auto: one model, T = 0 schemes only)."""
    from ..config import from_dict
    from ..config.tables import scheme_delay
    scheme, _, train = row_sections(name)
    if "models" in train:
        return int(train["models"])
    tc = from_dict({"scheme": {**scheme, "jobs": 1}, "cluster": {"workers": workers},
                    "train": train}, paths=False)
    return scheme_delay(tc.scheme, workers, tc.train) + 1


def row_sections(name: str, gap: float | None = None) -> tuple[dict, dict, dict]:
    """(scheme, policy, train) sections of row ``name`` (ValueError naming an unknown one);
    ``gap``, when given, replaces the gap of a row under the gap policy."""
    if name not in ROW_NAMES:
        raise ValueError(f"--schemes: unknown {name!r}; valid: {', '.join(ROW_NAMES)}")
    base = name.removesuffix(PIPELINED).removesuffix(ARRIVAL)
    scheme, policy = SCHEMES[base]
    if gap is not None and policy["name"] == "gap":
        policy = {**policy, "gap": gap}
    if base == name:
        return scheme, policy, {}
    from ..codes import make_scheme
    params = {k: v for k, v in scheme.items() if k != "name"}
    delay = make_scheme(scheme["name"], n=max(4, int(scheme.get("s", 0)) + 2), jobs=1,
                        **params).delay
    arrival = {"dispatch": "arrival"} if name.endswith(ARRIVAL) else {}
    return scheme, policy, {"models": delay + 2, **arrival}


@dataclass
class VersusConfig:
    model: str = "mlp"
    workers: int = 8
    jobs: int = 40
    batch_size: int = 512
    seed: int = 0
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    inject: str | None = "bursty"          # a delay model, "none", or None with a trace
    inject_params: dict = field(default_factory=dict)
    inject_trace: str | None = None
    time_scale: float | None = 1.0         # None with a trace: straggler excess = K x compute
    straggler_steps: float = 3.0           # K: bursty base = K x compute; a trace's auto scale
    gpus_per_worker: float = 0.0
    coordinator_device: str = "auto"       # where gcode's coordinator steps and decodes
    transport: str = "auto"                # how gcode's rounds move: auto | shm | ray
    prefetch: str = "auto"                 # gcode workers read ahead: auto (GPU) | on | off
    data_plane: str = "star"               # where gcode sums a job's gradient: star | collective
    zero: int = 0                          # collective plane: 1 shards the optimizers (ZeRO-1)
    gap: float = 0.05                      # the gap of every row under the gap policy
    repeats: int = 1
    num_samples: int = 8192
    log_dir: str | None = None             # each gcode row's per-round JSONL log goes here

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        for name in self.schemes:
            row_sections(name)
        for name in ("workers", "jobs", "batch_size", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        from ..config import BY_API
        from ..config.spec import choices_of
        for name in ("coordinator_device", "transport", "prefetch", "data_plane"):
            value, choices = getattr(self, name), choices_of(BY_API[f"scaling.{name}"].spec)
            flag = name.replace("_", "-")
            if value not in choices:
                raise ValueError(f"--{flag} must be one of {', '.join(choices)}, got {value!r}")
        if self.zero not in (0, 1) or (self.zero and self.data_plane != "collective"):
            raise ValueError(f"--zero must be 0, or 1 with --data-plane collective; got {self.zero!r} "
                             f"with --data-plane {self.data_plane}")
        if not self.gap > 0:
            raise ValueError(f"--gap must be > 0, got {self.gap}")
        if not self.straggler_steps > 0:
            raise ValueError(f"--straggler-steps must be > 0, got {self.straggler_steps}")
        if self.time_scale is None and self.inject_trace is None:
            raise ValueError("--time-scale auto needs --inject-trace (it scales a trace)")
        if self.time_scale is not None and not self.time_scale > 0:
            raise ValueError(f"--time-scale must be > 0, got {self.time_scale}")


def workload_of(cfg: VersusConfig):
    from ..train.presets import preset_workload
    model, mparams, dataset, dparams = MODELS[cfg.model]
    return preset_workload(model, dataset, model_params=mparams, dataset_params=dparams,
                           num_samples=cfg.num_samples, seed=cfg.seed, optimizer="sgd", lr=0.01,
                           optimizer_params={"momentum": 0.9})


def measure_compute(cfg: VersusConfig, workload) -> float:
    """Seconds of one worker's forward + backward on its share (batch/n) of a job, on one thread
    (or the GPU): the unit of the default injection."""
    import torch

    from ..train import TaskComputer
    device = "cuda" if cfg.gpus_per_worker > 0 and torch.cuda.is_available() else "cpu"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        computer = TaskComputer(workload, device)
        rows = np.arange(max(1, cfg.batch_size // cfg.workers))
        out = torch.empty(computer.num_params, device=computer.device)
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            computer.coded_gradient([rows], [1.0], out)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return float(np.median(times[1:]))
    finally:
        torch.set_num_threads(threads)


def delay_table(cfg: VersusConfig, rounds: int, compute_s: float) -> tuple[np.ndarray, dict]:
    """(rounds, workers) injected seconds shared by every row, and its description."""
    from ..config import InjectConfig
    from ..runtime.loop.inject import injected_delays
    if cfg.inject_trace is not None:
        ic = InjectConfig(trace=cfg.inject_trace, time_scale=cfg.time_scale or 1.0)
        if cfg.time_scale is None:  # auto: a straggler's excess is about K x one step
            raw = injected_delays(ic, cfg.workers, rounds, cfg.seed)
            ic.time_scale = cfg.straggler_steps * compute_s / straggler_excess(raw)
            table = raw * ic.time_scale
            return table, {"model": None, "trace": ic.trace, "params": {},
                           "time_scale": ic.time_scale,
                           "time_scale_rule": f"auto: excess = {cfg.straggler_steps:g} x step"}
    elif cfg.inject in (None, "none"):
        return np.zeros((rounds, cfg.workers)), {"model": None}
    else:
        params = dict(cfg.inject_params)
        if cfg.inject == "bursty":
            params = {"B": 1, "W": 2, "lam": 2, "base": cfg.straggler_steps * compute_s, **params}
        ic = InjectConfig(model=cfg.inject, params=params, time_scale=cfg.time_scale)
    table = injected_delays(ic, cfg.workers, rounds, cfg.seed)
    return table, {"model": ic.model, "trace": ic.trace, "params": ic.params,
                   "time_scale": ic.time_scale}


def straggler_excess(table: np.ndarray) -> float:
    """A delay table's typical straggler delay: the mean over rounds of the slowest worker's time
    minus the round's median (what ``--time-scale auto`` makes ``straggler_steps`` steps long)."""
    excess = float(np.mean(table.max(axis=1) - np.median(table, axis=1)))
    if not excess > 0:
        raise ValueError("--time-scale auto: the trace has no stragglers in the rounds replayed "
                         "(every worker's time equals its round's median)")
    return excess


def ddp_rows(cfg: VersusConfig) -> dict[str, int]:
    """{DDP row: M} for one model and for every other M that a row of ``cfg`` trains."""
    models = {row_models(s, cfg.workers) for s in cfg.schemes}
    return {ddp_row_name(m): m for m in sorted({1, *models})}


def run_versus(cfg: VersusConfig, progress=None) -> dict:
    """DDP and every scheme of ``cfg`` on one shared table of injected delays."""
    from ..config import ClusterConfig
    from ..runtime import pool_session

    if cfg.log_dir is not None:  # before anything is measured: a bad path fails at once
        Path(cfg.log_dir).mkdir(parents=True, exist_ok=True)
    workload = workload_of(cfg)
    compute_s = measure_compute(cfg, workload)
    rounds = cfg.jobs + 16  # room for delays T and an auto scheme's switches
    table, inject = delay_table(cfg, rounds, compute_s)
    ddps = ddp_rows(cfg)
    rows: dict[str, list[dict]] = {**{d: [] for d in ddps}, **{s: [] for s in cfg.schemes}}
    cluster = ClusterConfig(workers=cfg.workers, gpus_per_worker=cfg.gpus_per_worker,
                            startup_timeout_s=300)
    with tempfile.TemporaryDirectory(prefix="gcvs") as tmp, pool_session(cluster) as pool:
        trace_path = Path(tmp) / "delays.csv"
        np.savetxt(trace_path, table, delimiter=",", fmt="%.9f")
        gcode_inject = {"trace": str(trace_path), "time_scale": 1.0} if table.any() else {}
        if cfg.schemes:
            _gcode_row(replace(cfg, jobs=WARMUP_JOBS), "uncoded", workload, {}, pool, None)
        for rep in range(cfg.repeats):  # interleaved, rotated: drift hits every row alike
            order = [*ddps, *cfg.schemes]
            for name in order[rep % len(order):] + order[:rep % len(order)]:
                log = Path(cfg.log_dir or tmp) / f"{name}-{rep}.jsonl"
                started = time.time()
                row = (_ddp_row(cfg, workload, table, ddps[name]) if name in ddps else
                       _straggler_accounting(_gcode_row(cfg, name, workload, gcode_inject, pool,
                                                        log), log, table, inject))
                # when the row ran (Unix seconds), to match samples such as GPU utilisation
                rows[name].append({**row, "started_unix": started, "ended_unix": time.time()})
                if progress is not None:
                    progress(1)
    return summarize(cfg, rows, compute_s, inject, workload)


def _straggler_accounting(row: dict, log: Path, table: np.ndarray, inject: dict) -> dict:
    """``row`` with its declared stragglers (the (round, worker) pairs its policy cut, from its
    per-round log) set against the bursty table's injected ones (exactly the paper's rule at
    μ = 1, by the bursty model's construction): ``stragglers_injected``,
    ``on_time_declared`` (cut, though not injected: each spends a sequential scheme's budget)
    and ``injected_waited_for`` (injected, yet the round waited for them). None for other delay
    models, whose stragglers are not defined."""
    import json

    from ..stragglers import detect_stragglers
    keys = ("stragglers_injected", "on_time_declared", "injected_waited_for")
    if inject.get("model") != "bursty":
        return {**row, **dict.fromkeys(keys)}
    injected = detect_stragglers(table[:row["rounds"]], 1.0)
    declared = np.zeros_like(injected)
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if "stragglers" in record and record.get("round", -1) < len(declared):
            declared[record["round"], record["stragglers"]] = True
    return {**row, "stragglers_injected": int(injected.sum()),
            "on_time_declared": int((declared & ~injected).sum()),
            "injected_waited_for": int((injected & ~declared).sum())}


def _ddp_row(cfg: VersusConfig, workload, table: np.ndarray, models: int) -> dict:
    from .ddp import DDPRun, run_ddp
    res = run_ddp(DDPRun(workload, cfg.workers, cfg.jobs, cfg.batch_size, cfg.seed, table,
                         use_gpu=cfg.gpus_per_worker > 0, models=models))
    return {"system": "ddp", "scheme": "ddp", "row": ddp_row_name(models),
            "params": {"backend": res["backend"]}, "wall_s": res["wall_s"], "steps": res["steps"],
            "models": res["models"], "steps_per_model": res["steps_per_model"],
            "compute_s_per_round": res["compute_s_per_round"], "overhead_s_per_round": None,
            "param_checksum": res["param_checksum"], "exact": True}


def _gcode_row(cfg: VersusConfig, name: str, workload, inject: dict, pool,
               log: Path | None) -> dict:
    from ..config import from_dict
    from ..runtime.run import execute
    scheme, policy, train = row_sections(name, cfg.gap)
    tc = from_dict({"scheme": {**scheme, "jobs": cfg.jobs}, "policy": policy,
                    "cluster": {"workers": cfg.workers, "gpus_per_worker": cfg.gpus_per_worker,
                                "coordinator_device": cfg.coordinator_device,
                                "transport": cfg.transport, "prefetch": cfg.prefetch,
                                "data_plane": cfg.data_plane, "zero": cfg.zero,
                                "round_timeout_s": 600},
                    "train": {"batch_size": cfg.batch_size, "seed": cfg.seed, **train},
                    "inject": inject, "log": {"jsonl": None if log is None else str(log)}})
    metrics, _ = execute(tc, workload, pool=pool)
    return {"system": "gcode", "scheme": metrics["scheme"], "row": name,
            "params": {**metrics["params"], **_policy_params(policy), **train},
            "wall_s": metrics["runtime_s"], "steps": metrics["decoded_jobs"],
            "rounds": metrics["rounds"], "waits": metrics["waits"], "models": metrics["models"],
            "steps_per_model": metrics["steps_per_model"],
            "stragglers_declared": metrics["stragglers"],
            "compute_s_per_round": metrics["compute_s_per_round"],
            "overhead_s_per_round": metrics["overhead_s_per_round"],
            "exposed_overhead_s_per_round": metrics["exposed_overhead_s_per_round"],
            "pipelined_rounds": metrics["pipelined_rounds"],
            "dispatched_at_arrival": metrics["dispatched_at_arrival"],
            "coordinator_device": metrics["coordinator_device"],
            "transport": metrics["transport"], "data_plane": metrics["data_plane"],
            "zero": metrics["zero"],
            "coordinator_bytes_per_round": metrics["coordinator_bytes_per_round"],
            "prefetch": metrics["prefetch"], "read_ahead_tasks": metrics["read_ahead_tasks"],
            "timings_s_per_round": metrics["timings_s_per_round"],
            **({"plane_s_per_decode": metrics["plane_s_per_decode"]}
               if "plane_s_per_decode" in metrics else {}),
            "param_checksum": metrics["param_checksum"], "exact": not metrics["approximate"]}


def _policy_params(policy: dict) -> dict:
    """A row's policy as its ``params`` show it: the name, and μ or the gap where set."""
    return {"policy": policy["name"], **{k: policy[k] for k in ("mu", "gap") if k in policy}}


def summarize(cfg: VersusConfig, runs: dict[str, list[dict]], compute_s: float, inject: dict,
              workload) -> dict:
    """Median over repeats per row; ``vs_ddp`` = the wall time of DDP training the row's M
    models / the row's (``ddp_row`` names it)."""
    out_rows = []
    for reps in runs.values():
        if not reps:
            continue
        row = dict(reps[len(reps) // 2] if len(reps) % 2 else reps[0])
        row["wall_s"] = float(np.median([r["wall_s"] for r in reps]))
        row["wall_s_all"] = [r["wall_s"] for r in reps]
        out_rows.append(row)
    ddp = {r["models"]: r for r in out_rows if r["system"] == "ddp"}
    for row in out_rows:
        row["ddp_row"] = ddp[row["models"]]["row"]
        row["vs_ddp"] = ddp[row["models"]]["wall_s"] / row["wall_s"]
    best_by_models = {}
    for m in sorted(ddp):
        exact = [r for r in out_rows if r["system"] == "gcode" and r["exact"] and r["models"] == m]
        if exact:
            b = max(exact, key=lambda r: r["vs_ddp"])
            best_by_models[str(m)] = {"row": b.get("row"), "vs_ddp": b["vs_ddp"], "models": m,
                                      "steps_per_model": b["steps_per_model"]}
    import torch

    from ..train import build_model, num_params
    return {"config": {"model": cfg.model, "num_params": num_params(build_model(workload.model_fn, 0)),
                       "workers": cfg.workers, "jobs": cfg.jobs, "batch_size": cfg.batch_size,
                       "seed": cfg.seed, "repeats": cfg.repeats, "inject": inject,
                       "compute_s_per_worker": compute_s, "gpus_per_worker": cfg.gpus_per_worker,
                       "coordinator_device": cfg.coordinator_device, "transport": cfg.transport,
                       "prefetch": cfg.prefetch, "data_plane": cfg.data_plane, "zero": cfg.zero,
                       "gap": cfg.gap,
                       "straggler_steps": cfg.straggler_steps,
                       "gcode_warmup_jobs": WARMUP_JOBS if cfg.schemes else 0,
                       "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
            "rows": out_rows, "best_exact": best_by_models.get("1"),
            "best_exact_by_models": best_by_models}
