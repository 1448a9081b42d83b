"""``gcode bench scale``: how the cost of a round grows with the number of workers n.

For each n and each scheme (the paper's parameters scaled to n, as ``gcode simulate`` picks
them; FR and cyclic codes) on a synthetic trace resampled from the bundled Lambda trace:

* **simulator**: ``gcode.sim.simulate`` over every round, in µs per worker-round, and its peak
  memory (tracemalloc, in a separate untimed pass; the trace itself excluded);
* **coordinator bookkeeping**: what the live loop pays per round besides Ray, with no Ray:
  plan(r), every worker's task list as the wire tuples it dispatches, the round decision
  (conforms), record, and every decodable job's decoding down to its (key, coefficient) list.
  Round 0 is reported apart as setup (a cyclic code solves its rows there); the table shows
  the median round (other work on a shared box inflates single rounds), the JSON every round;
* **end to end** at the largest n: ``gcode simulate --scheme X`` as a subprocess on the CSV and
  on the .npy trace, wall time and peak RSS (the acceptance target: ≤ 10 s and ≤ 2 GB).

Cost per worker-round that stays flat as n grows means total cost linear in n.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from ..codes import make_scheme
from ..paths import save_figure
from ..sim import PaperPolicy, simulate
from ..sim.load_model import LoadModel
from ..sim.online import OnlineConfig, OnlineTuner
from ..sim.paper import PAPER_LOAD_SLOPE, bundled_trace, default_params
from ..sim.policy import RoundOutcome, censored_times
from ..stragglers import load_trace
from ..stragglers.trace import save_trace

BUDGET_US = 20.0  # coordinator bookkeeping target per worker per round (at n = 4096)
#: (label, scheme, gc_code)
ROWS = [("uncoded", "uncoded", None), ("ignore", "ignore", None), ("gc fr", "gc", "fr"),
        ("srsgc fr", "srsgc", "fr"), ("msgc fr", "msgc", "fr"), ("gc cyclic", "gc", "cyclic"),
        ("srsgc cyclic", "srsgc", "cyclic"), ("msgc cyclic", "msgc", "cyclic"), ("auto", "auto", None)]
#: the runs the issue timed before (CLI arguments after --trace)
ISSUE_RUNS = [["--scheme", "uncoded"], ["--scheme", "gc", "--s", "100", "--gc-code", "fr"],
              ["--scheme", "msgc", "--B", "1", "--W", "2", "--lam", "200"]]


def synthetic_trace(rounds: int, n: int, seed: int = 0) -> np.ndarray:
    """(rounds, n) times: each round resamples one round of the bundled 256-worker Lambda
    trace, worker by worker, with ±2% jitter (Lambda-like stragglers at any n)."""
    with bundled_trace() as path:
        base = load_trace(path)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, base.shape[0], rounds)
    cols = rng.integers(0, base.shape[1], (rounds, n))
    return base[rows[:, None], cols] * rng.uniform(0.98, 1.02, (rounds, n))


def _params(name: str, n: int, code: str | None) -> dict:
    if name == "auto":
        return {}
    params = default_params(name, n)
    return {**params, "gc_code": code} if code else params


def _make(name: str, params: dict, n: int, jobs: int, loads: LoadModel):
    """(scheme, round-ending policy) as ``gcode simulate`` builds them (auto: its tuner)."""
    if name == "auto":
        tuner = OnlineTuner(n, jobs, loads, OnlineConfig())
        return tuner.scheme, tuner
    return make_scheme(name, n=n, jobs=jobs, **params), PaperPolicy(1.0)


def _simulate(name, params, n, trace, loads):
    scheme, policy = _make(name, params, n, trace.shape[0] - 4, loads)
    return simulate(scheme, trace[:, :n], policy, loads)


def _bookkeeping(name, params, n, trace, loads, rounds: int) -> tuple[float, list[float]]:
    """(setup seconds: construction and round 0, seconds of each round 1 …)."""
    start = time.perf_counter()
    scheme, policy = _make(name, params, n, rounds + 4, loads)
    setup, steady = time.perf_counter() - start, []
    for r in range(rounds):
        times = loads.times(trace[r, :n], scheme.round_load(r))
        tick = time.perf_counter()
        plan = scheme.plan(r)
        wire = [[(t.job, t.slot, t.chunks, t.coefficients) for t in plan[w]] for w in range(n)]
        outcome = (policy.resolve(times, lambda stragglers, r=r: scheme.conforms(r, stragglers))
                   if plan.has_tasks else RoundOutcome(np.ones(n, dtype=bool), 0.0, False))
        scheme.record(r, outcome.arrived)
        policy.observe(r, censored_times(times, outcome.arrived), scheme.round_load(r), outcome.duration)
        for t in range(max(0, r - scheme.delay), r + 1):
            if scheme.decodable(t):
                scheme.decode(t).items()
        spent = time.perf_counter() - tick
        del wire
        if r == 0:
            setup += spent
        else:
            steady.append(spent)
    return setup, steady


def _peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


#: runs ``gcode`` with the arguments given, then prints its own peak RSS (VmHWM: the high-water
#: mark of this process image, which ru_maxrss is not: it also counts the forked parent's pages)
_CHILD = """import sys
from gcode.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as f:
    peak = [line.split()[1] for line in f if line.startswith("VmHWM:")]
print("VmHWM_KiB", peak[0] if peak else "nan", file=sys.stderr)
sys.exit(code)
"""


def _child_peak_mb(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one ``gcode simulate ARGS --json`` process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, "simulate", *args, "--json"],
                          check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"gcode simulate {' '.join(args)} failed: {proc.stderr[-500:]}")
    peak = proc.stderr.rsplit("VmHWM_KiB", 1)[-1].split()
    return wall, float(peak[0]) / 1024 if peak else math.nan


def end_to_end_runs(quick: bool = False) -> list[list[str]]:
    """The ``gcode simulate`` arguments timed end to end: every scheme with its defaults, and
    the issue's runs (one run when ``quick``)."""
    if quick:
        return [["--scheme", "uncoded"]]
    schemes = ("uncoded", "ignore", "gc", "srsgc", "msgc", "auto")
    return [["--scheme", name] for name in schemes] + ISSUE_RUNS[1:]


def run_scale_bench(ns=(256, 1024, 4096, 10000), rounds: int = 1000, book_rounds: int = 40,
                    cyclic_book_max_n: int = 4096, end_to_end=None, progress=None,
                    labels: tuple[str, ...] | None = None) -> dict:
    """Every row of :data:`ROWS` (``labels``: only those) at every n, then ``end_to_end`` (a
    list of ``gcode simulate`` argument lists, see :func:`end_to_end_runs`) at the largest n;
    see the module docstring.
    A cyclic code's bookkeeping is timed up to ``cyclic_book_max_n``: building its rows costs
    O(n·s³) once (:func:`gcode.codes.cyclic_solve.build_band`), minutes at n = 10,000."""
    loads = LoadModel("additive", PAPER_LOAD_SLOPE)
    trace = synthetic_trace(rounds, max(ns))
    rows = []
    for n in ns:
        for label, name, code in ROWS:
            if labels is not None and label not in labels:
                continue
            params = _params(name, n, code)
            start = time.perf_counter()
            result = _simulate(name, params, n, trace, loads)
            sim_s = time.perf_counter() - start
            row = {"n": n, "label": label, "scheme": name, "params": params, "rounds": result.rounds,
                   "runtime_s": result.runtime_s, "waits": result.waits, "sim_s": sim_s,
                   "sim_us_per_worker_round": sim_s / (result.rounds * n) * 1e6,
                   "sim_peak_mb": _peak_mb(lambda a=(name, params, n, trace, loads): _simulate(*a))}
            if code == "cyclic" and n > cyclic_book_max_n:  # the simulator never builds the rows
                row["book_skipped"] = (f"a cyclic code's rows cost O(n s^3) to build once (n "
                                       f"systems of s x s; at n=10000 the paper's s is 449 to "
                                       f"1055: minutes); measured up to n={cyclic_book_max_n}")
            else:
                with threadpool_limits(limits=1, user_api="blas"):  # as the live runtime runs
                    setup, per_round = _bookkeeping(name, params, n, trace, loads, book_rounds)
                row.update(book_setup_s=setup, book_rounds=book_rounds,
                           book_us_per_worker_round=float(np.median(per_round)) / n * 1e6,
                           book_mean_us_per_worker_round=float(np.mean(per_round)) / n * 1e6,
                           book_ms_per_round_all=[s * 1e3 for s in per_round])
            rows.append(row)
            if progress is not None:
                progress(1)
    out = {"ns": list(ns), "rounds": rounds, "budget_us": BUDGET_US, "load_slope": PAPER_LOAD_SLOPE,
           "rows": rows, "end_to_end": []}
    if end_to_end:
        out["end_to_end"] = _end_to_end(trace, end_to_end, progress)
    return out


def _end_to_end(trace: np.ndarray, runs: list[list[str]], progress) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {fmt: Path(tmp) / f"synthetic.{fmt}" for fmt in ("csv", "npy")}
        np.savetxt(paths["csv"], trace, fmt="%.4f", delimiter=",")  # 70 MB at 1,000 x 10,000
        save_trace(load_trace(paths["csv"]), paths["npy"])
        for args in runs:
            for fmt, path in paths.items():
                wall, peak = _child_peak_mb(["--trace", str(path), *args])
                rows.append({"command": " ".join(["gcode simulate", *args]), "trace_format": fmt,
                             "trace_mb": path.stat().st_size / 2**20, "rounds": trace.shape[0],
                             "n": trace.shape[1], "wall_s": wall, "peak_rss_mb": peak})
            if progress is not None:
                progress(1)
    return rows


def markdown_table(result: dict) -> str:
    ns = result["ns"]
    head = "| scheme | " + " | ".join(f"n={n}" for n in ns) + " |"
    rule = "|---|" + "---|" * len(ns)

    def grid(title, cell):
        lines = [title, "", head, rule]
        for label, _, _ in ROWS:
            cells = []
            for n in ns:
                row = next(r for r in result["rows"] if r["n"] == n and r["label"] == label)
                cells.append(cell(row))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return lines

    def cell(key, fmt):
        return lambda r: fmt.format(r[key]) if key in r else "skipped"

    out = grid(f"**Simulator**, µs per worker-round ({result['rounds']} rounds, paper policy; auto: "
               f"its tuner with the partial fallback):",
               cell("sim_us_per_worker_round", "{:.3f}"))
    out += [""] + grid(f"**Coordinator bookkeeping**, µs per worker-round, median round of "
                       f"{result['rows'][0].get('book_rounds', 0) - 1} (no Ray; budget "
                       f"{result['budget_us']:.0f} µs; setup = construction and round 0):",
                       lambda r: (f"{r['book_us_per_worker_round']:.2f} (setup {r['book_setup_s']:.2f} s)"
                                  if "book_us_per_worker_round" in r else "skipped"))
    out += [""] + grid("**Simulator peak memory**, MiB above the trace (tracemalloc):",
                       cell("sim_peak_mb", "{:.1f}"))
    rerun = result.get("rows_rerun")
    if rerun:
        out += ["", (f"Rows {', '.join(rerun['labels'])} rerun on {rerun['date']} (load average "
                     f"{rerun['load_average']:.1f}, side by side in one run; {rerun['why']}); the other "
                     f"rows are from {result['environment']['date']}.")]
    skipped = {r[k] for r in result["rows"] for k in ("skipped", "book_skipped") if k in r}
    if skipped:
        out += ["", "Skipped: " + "; ".join(sorted(skipped)) + "."]
    if result["end_to_end"]:
        first = result["end_to_end"][0]
        out += ["", (f"**End to end**, `gcode simulate` on {first['rounds']:,} rounds x {first['n']:,} "
                     "workers, trace loading included (target: at most 10 s and 2 GB):"), "",
                "| command | trace | wall s | peak RSS MiB |", "|---|---|---|---|"]
        for r in result["end_to_end"]:
            out.append(f"| `{r['command']}` | {r['trace_format']} ({r['trace_mb']:.0f} MiB) | "
                       f"{r['wall_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(out)


def plot(result: dict, out_dir) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, _, _ in ROWS:
        rows = sorted((r for r in result["rows"] if r["label"] == label and "skipped" not in r),
                      key=lambda r: r["n"])
        style = "--" if "cyclic" in label else "-"
        axes[0].loglog([r["n"] for r in rows], [r["sim_us_per_worker_round"] for r in rows],
                       "o" + style, label=label)
        book = [r for r in rows if "book_us_per_worker_round" in r]
        if book:
            axes[1].loglog([r["n"] for r in book], [r["book_us_per_worker_round"] for r in book],
                           "o" + style, label=label)
    axes[1].axhline(result["budget_us"], color="k", lw=0.8, ls=":",
                    label=f"budget {result['budget_us']:.0f} µs")
    for ax, title in zip(axes, ("simulator", "coordinator bookkeeping (no Ray)")):
        ax.set_xlabel("workers n")
        ax.set_ylabel("µs per worker-round")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle("cost per worker-round against n (flat = linear in n)")
    fig.tight_layout()
    path = Path(out_dir) / "bench_scale.png"
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return [path]
