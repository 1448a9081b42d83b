"""The planes' per-parameter CPU work, measured on one core through the code the live planes run,
for the network model's work terms (:class:`gcode.sim.network.PlaneWork`).

* **fold**: :meth:`gcode.runtime.collective.accumulate.JobAccumulators.fold` of one fp32 coded
  message into a fresh accumulator (acc += a·m), fp32 accumulators (uncoded) and fp64 (every
  code), the message warm in the cache as the live loop's is (its compute has just written it);
* **step**: :func:`gcode.train.step.step` on mlp-wide (784-4096-10, 3.26M parameters) with the
  decoded sum: the fp64 norm, the cast into the model's gradient, the optimizer's step; for Adam
  (``gcode train``'s default, what ``benchmarks/netns_live.py`` runs) and SGD with momentum 0.9
  (``gcode bench versus``'s), the cache emptied first (the compute between two decodes evicts
  the replica and its optimizer state);
* **check**: :func:`gcode.runtime.collective.replicas.checksum` of the replica's parameters and
  optimizer state (the digest each worker takes every ``CHECK_EVERY`` decodes; the allreduce of
  the digest is one small message, left to the links' α);

Each cost is the fastest of ``repeats`` timings over d (the one least disturbed by the shared
machine's other work: these are a dedicated core's costs), in seconds per parameter, with one
torch thread (one CPU per worker node). These are a dedicated core's costs: on a machine shared by n
emulated nodes and other work they stretch (``benchmarks/network_live_model.py`` calibrates them
in place from the live runs' phases). ``benchmarks/network_calibration.py work`` writes them.
"""

from __future__ import annotations

import statistics
import time

import torch

MLP_WIDE = (784, 4096, 10)


def _fastest_s(fn, repeats: int, flush: torch.Tensor | None = None) -> float:
    """The fastest of ``repeats`` calls of ``fn``, each after writing ``flush`` (an array beyond
    the caches: the call then starts cold) where given."""
    fn()  # warm-up: first-touch allocation, lazy state
    times = []
    for _ in range(repeats):
        if flush is not None:
            flush.fill_(1.0)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def mlp(shape=MLP_WIDE) -> torch.nn.Module:
    torch.manual_seed(0)
    i, h, o = shape
    return torch.nn.Sequential(torch.nn.Linear(i, h), torch.nn.ReLU(), torch.nn.Linear(h, o))


def fold_s_per_param(numel: int, dtype: torch.dtype, repeats: int) -> float:
    """One fp32 message folded into a fresh accumulator of ``dtype`` (the accumulator's zeroing
    included: a job's accumulator is made at its first fold)."""
    from gcode.runtime.collective.accumulate import JobAccumulators
    jobs = JobAccumulators(numel, dtype)
    message = torch.ones(numel, dtype=torch.float32)
    state = {"job": 0}

    def fold():
        job = state["job"] = state["job"] + 1
        jobs.keep(("w", job), job, message)
        jobs.fold(job, [(("w", job), 0.5)])
        jobs.release(job)

    return _fastest_s(fold, repeats) / numel


def step_s_per_param(optimizer: str, accumulate: torch.dtype, repeats: int, shape=MLP_WIDE,
                     flush_mb: int = 64) -> tuple[float, float, int]:
    """A replica's step with the decoded sum in ``accumulate``, and then its check (the digest
    of parameters and optimizer state): seconds per model parameter each, and d."""
    from gcode.runtime.collective.replicas import checksum
    from gcode.train.flat import FlatModel
    from gcode.train.optim import make_optimizer
    from gcode.train.step import step
    hyper = {"lr": 1e-3} if optimizer == "adam" else {"lr": 0.01, "momentum": 0.9}
    model = FlatModel(mlp(shape))
    opt = make_optimizer(optimizer, model.module.parameters(), **hyper)
    grad = torch.full((model.numel,), 1e-3, dtype=accumulate)
    flush = torch.empty(flush_mb * 2**18, dtype=torch.float32)
    stepped = _fastest_s(lambda: step(model, opt, grad, 1.0 / 512, skip_nonfinite=True), repeats, flush)
    state = [v for st in opt.state_dict()["state"].values() for v in st.values()
             if isinstance(v, torch.Tensor)]
    checked = _fastest_s(lambda: checksum([model.params, *state]), repeats, flush)
    return stepped / model.numel, checked / model.numel, model.numel


def measure(repeats: int = 15, sizes=(3_256_330, 11_200_000), shape=MLP_WIDE, flush_mb: int = 64) -> dict:
    """Every work term, at one torch thread (folds of ``sizes`` values, steps of an MLP of
    ``shape``, each step and check after writing ``flush_mb`` MB); returns the per-parameter
    costs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fold = {name: {str(n): fold_s_per_param(n, dtype, repeats) for n in sizes}
                for name, dtype in (("float32", torch.float32), ("float64", torch.float64))}
        steps: dict = {}
        for optimizer in ("adam", "sgd"):
            for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
                s, c, d = step_s_per_param(optimizer, dtype, repeats, shape, flush_mb)
                steps[f"{optimizer}/{name}"] = {"step_s_per_param": s, "check_s_per_param": c, "params": d}
    finally:
        torch.set_num_threads(threads)
    return {"repeats": repeats, "threads": 1, "fold_s_per_param": fold, "step": steps,
            "torch": torch.__version__}


def terms(work: dict, optimizer: str = "adam", accumulate: str = "float32") -> dict:
    """The model's work terms from :func:`measure`'s result: fold per dtype (median over the
    sizes), the replica's step and check for ``optimizer`` with ``accumulate`` sums."""
    fold = {dt: float(statistics.median(v.values())) for dt, v in work["fold_s_per_param"].items()}
    step = work["step"][f"{optimizer}/{accumulate}"]
    return {"fold_fp32_s_per_param": fold["float32"], "fold_fp64_s_per_param": fold["float64"],
            "step_s_per_param": step["step_s_per_param"], "check_s_per_param": step["check_s_per_param"]}
