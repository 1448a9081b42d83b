"""The sections of docs/RESULTS.md, in order, and the README's headline rows.

To show a new benchmark: add a ``Section`` naming its JSON files under benchmarks/results, a
heading, a context paragraph (what it measures, how to read it; no measured numbers: those come
from the JSON through the renderer) and a renderer (``versus(stem)`` for a ``gcode bench versus``
result, the benchmark's own ``markdown_table``, or a few lines here). Then run
``python benchmarks/make_results.py``. tests/docs/test_results_doc.py fails while docs/RESULTS.md is
stale or a JSON file is neither shown nor listed in ``UNSHOWN``.
"""

from __future__ import annotations

from pathlib import Path

import bench_codes
import device_exact
import netns_live
import network_calibration
import sim_replay_live
import sim_slack
from results_doc import (
    Headline,
    Section,
    find_row,
    gcode_rows,
    measured,
    models,
    ms,
    runs_setup,
    runs_table,
    short_setup,
    table,
    trained,
    versus,
    x,
)

from gcode.bench import auto, decode, live, scale, scale_network, sim, trace
from gcode.bench.versus_report import _params_text

COMPUTE = {"compute ms/round": lambda d, r: ms(r["compute_s_per_round"])}
OVERHEAD = {"overhead ms/round": lambda d, r: ms(r["overhead_s_per_round"])}
STRAGGLERS = {"stragglers injected / on-time cut / injected waited for":
              lambda d, r: "-" if r.get("on_time_declared") is None else
              f"{r['stragglers_injected']} / {r['on_time_declared']} / {r['injected_waited_for']}"}


def _conf(key, fmt=str):
    return lambda d, r: "-" if d["config"].get(key) is None else fmt(d["config"][key])


def _base_ms(d, r):
    p = (d["config"].get("inject") or {}).get("params") or {}
    return f"{1e3 * p['base']:.0f}" if "base" in p else "-"


def _where(d, r):
    """Transport and coordinator device; runs from before the shm transport recorded neither."""
    return f"{r.get('transport') or '-'}, {r.get('coordinator_device') or '-'}"


RESNET_CPU_COLS = {"CPUs": lambda d, r: d["environment"]["cpus"], "workers": _conf("workers"),
                   "transport, coordinator": _where, "gap": lambda d, r: r["params"].get("gap", "-"),
                   "base ms": _base_ms, **COMPUTE, **OVERHEAD, **STRAGGLERS}


# --- renderers of the non-versus benchmarks -----------------------------------------------------

def overhead_table(docs):
    rows = []
    for stem, d in docs.items():
        for r in gcode_rows(d):
            round_s = r["wall_s"] / r["rounds"]
            rows.append([f"`{stem}`", r["row"], trained(r), x(r["vs_ddp"], 3), f"{1e3 * round_s:.1f}",
                         f"{ms(r['overhead_s_per_round'])} ({r['overhead_s_per_round'] / round_s:.1%})",
                         (f"{ms(r['exposed_overhead_s_per_round'])} "
                          f"({r['exposed_overhead_s_per_round'] / round_s:.1%})"),
                         ms(r["timings_s_per_round"]["fetch"])])
    return runs_setup(docs) + "\n\n" + table(
        ["run", "row", "trained", "vs DDP", "round ms", "overhead ms (share of the round)",
         "not overlapped ms (share)", "fetch ms/round"], rows)


def fetch_cost_table(docs):
    rows = [[f"`{s}`", d["device"], d["results"], f"{d['params']:,}", d["repeats"],
             *(f"{d[k]:.2f}" for k in ("staged", "copy", "check", "async", "async_queue"))]
            for s, d in docs.items()]
    return table(["run", "device", "results a round", "values a result", "repeats",
                  "staged (copy, then check, waited for)", "copy", "check", "async, whole",
                  "async, host's share"], rows)


def cpu_spread_table(docs):
    d = docs["cpu_spread_resnet18"]
    rows = [[mode, f"{r['mean_s']:.2f}", x(r["slowest_over_median"]),
             ", ".join(f"{t:.2f}" for t in r["per_process_median_s"])] for mode, r in d["modes"].items()]
    return (f"{len(d['modes']['free']['per_process_median_s'])} processes on {d['logical_cpus']} "
            "logical CPUs; `cores` pins each process to its own core.\n\n"
            + table(["mode", "mean s a pass", "slowest over median, per pass",
                     "each process's median s"], rows))


def sim_replay_tables(docs):
    return (sim_replay_live.replay_table(docs["sim_replay_live"]) + "\n\n"
            + sim_replay_live.policy_table(docs["sim_replay_policies"]))


def sim_slack_table(docs):
    d = docs["sim_slack"]
    return f"{d['seeds']} delay tables (seeds), {d['jobs']} jobs each.\n\n" + sim_slack.markdown_table(d)


def gpu2_table(docs):
    rows = []
    for stem, d in docs.items():
        for r in d["rows"]:
            t = r.get("timings_s_per_round") or {}
            rounds = r.get("rounds", r["steps"])
            rows.append([f"`{stem}`", r.get("row", "ddp"), trained(r), f"{r['wall_s']:.2f}",
                         x(r["vs_ddp"], 3), f"{1e3 * r['wall_s'] / rounds:.0f}", ms(r["compute_s_per_round"]),
                         *(ms(t.get(k)) if t else "-" for k in ("issue", "dispatch", "fetch", "decode",
                                                                "step"))])
    return runs_setup(docs) + "\n\n" + table(
        ["run", "row", "trained", "wall s", "vs DDP", "round ms", "worker compute ms", "issue",
         "dispatch", "fetch", "decode", "step"], rows)


PROFILE_PHASES = ("load", "data", "backward", "gather", "to_host", "task", "worker", "worker_ahead",
                  "plain")


def profile_table(docs):
    rows = [[d["model"], d["samples"], *(f"{d['median_ms'][k]:.1f}" for k in PROFILE_PHASES)]
            for d in docs.values()]
    first = next(iter(docs.values()))
    return (f"One process on {first['gpu']} (torch {first['torch']}), medians of {first['repeats']} "
            "tasks after two warm-ups, ms.\n\n" + table(["model", "samples", *PROFILE_PHASES], rows))


def bench_gpu_table(docs):
    d = docs["bench_gpu"]

    def diff(v):
        return "-" if v is None else f"{v:.1e}"
    rows = [[r["scheme"], f"{r['wall_s']:.2f}", r["rounds"], diff(r["rel_param_diff_vs_uncoded"]),
             diff(r["rel_param_diff_vs_same_split"]),
             *(f"{r[k]:.1f}" for k in ("compute_ms", "transfer_ms", "decode_ms", "step_ms", "overhead_ms",
                                        "round_ms"))] for r in d["rows"]]
    return (f"{d['model']} ({d['num_params']:,} parameters), {d['workers']} workers sharing one "
            f"{d['gpu']} ({d['gpus_per_worker']} GPU each), global batch {d['batch_size']}, "
            f"{d['jobs']} jobs per run on 2 models (M-SGC and the others alike). {measured(d)}\n\n"
            + table(["run", "wall s", "rounds", "params vs uncoded (relative)",
                     "params vs the same batch split", "compute ms", "transfer ms", "decode ms",
                     "step ms", "coordinator overhead ms", "round ms"], rows))


# --- the simulator on the Lambda traces (sim_lambda.json) ---------------------------------------

def _run(d, command):
    return next(r["result"] for r in d["runs"] if r["command"] == command)


def _models_of(res):
    t = res.get("delay_T") or 0
    return f"{res['jobs']} jobs" + (f" (M ≥ {t + 1} models)" if t else " (1 model)")


def sim_default(docs):
    d = docs["sim_lambda"]
    out = []
    for command in ("gcode simulate --policy paper --dispatch round --json",
                    "gcode simulate --trace traces/lambda-cnn-w256-r20-canada.csv --json"):
        res = _run(d, command)
        base = res["schemes"]["uncoded"]["runtime_s"]
        rows = [[name, _params_text(s["params"]).rstrip(","),
                 f"{s['load']:.5f}", s["delay_T"], _models_of(s), s["rounds"], s["waits"],
                 f"{s['runtime_s']:.4f}", x(base / s["runtime_s"], 3)]
                for name, s in res["schemes"].items() if "runtime_s" in s]
        out.append(f"`{command.removesuffix(' --json')}` ({res['trace']}):\n\n" + table(
            ["scheme", "params", "load", "T", "jobs (models, live)", "rounds", "waits", "runtime s",
             "vs uncoded"], rows))
    return "\n\n".join(out) + f"\n\n{measured(d)}"


def sim_policies(docs):
    d = docs["sim_lambda"]
    policies = ("paper", "partial", "earliest", "gap")
    schemes = ("uncoded", "ignore", "gc", "srsgc", "msgc", "auto")
    rows = []
    for p in policies:
        for disp in ("round", "arrival"):
            res = _run(d, f"gcode simulate --policy {p} --dispatch {disp} --json")["schemes"]
            rows.append([p, disp, *(f"{res[s]['runtime_s']:.2f}" if "runtime_s" in res[s] else "skipped"
                                    for s in schemes)])
    return ("Runtime in simulated seconds on the bundled 30-round trace (paper parameters, 26 jobs; "
            "`ignore` is approximate; SR-SGC and auto cannot dispatch at arrival; auto picks each "
            "candidate's own policy, so its row is run under paper and partial only).\n\n"
            + table(["policy", "dispatch", *schemes], rows))


PINNED = ("gcode simulate --scheme srsgc --B 1 --W 2 --lam 27 --gc-code cyclic --json",
          "gcode simulate --scheme srsgc --B 3 --W 4 --lam 40 --gc-code cyclic --json",
          "gcode simulate --scheme gc --s 11 --gc-code cyclic --json",
          ("gcode simulate --trace traces/lambda-cnn-w256-r20-canada.csv --scheme srsgc --B 2 --W 3 "
           "--lam 25 --gc-code cyclic --json"))


def sim_pinned(docs):
    d = docs["sim_lambda"]
    rows = []
    for c in PINNED:
        r = _run(d, c)
        rows.append([f"`{c.removesuffix(' --json')}`", _models_of(r), f"{r['runtime_s']:.4f}", r["waits"]])
    return table(["command", "jobs (models, live)", "runtime s", "waits"], rows)


def sim_tune(docs):
    d = docs["sim_lambda"]
    rows = []
    for trace_arg, name in (("", "30 rounds"), (" --trace traces/lambda-cnn-w256-r20-canada.csv",
                                                  "20 rounds")):
        best = _run(d, f"gcode tune{trace_arg} --json")["best"]
        gc = best["gc"]["runtime_s"]
        for scheme, b in best.items():
            rows.append([name, scheme, ",".join(f"{k}={v}" for k, v in b["params"].items()),
                         f"{b['runtime_s']:.3f}", b["waits"], f"{100 * (gc / b['runtime_s'] - 1):+.1f}%"])
    return table(["trace", "scheme", "hindsight-best params", "runtime s", "waits",
                  "faster than the best GC by"], rows)


def advise_live_table(doc: dict) -> str:
    rows = []
    for case, c in doc["cases"].items():
        conf = c["advice"]["confidence"]
        probe, med = c["advice"]["probe"], c["median_runtime_s"]
        what = (f"bursty {c['inject']['params']}" if c["inject"]["model"] else c["inject"]["trace"])
        rows.append([case, what, f"{probe['jobs']} rounds", f"`{c['recommended']}`",
                     x(c["predicted_speedup"], 3),
                     f"{x(conf['speedup_vs_uncoded_p10'])}–{x(conf['speedup_vs_uncoded_p90'])}",
                     f"{med['uncoded']:.2f}", f"{med['recommended']:.2f}", x(c["measured_speedup"], 3),
                     f"{100 * c['error']:+.1f}%"])
    return (f"{doc['workers']} workers, {doc['model']}, global batch {doc['batch_size']}, "
            f"{doc['jobs']} jobs a run (1 model × {doc['jobs']} steps), median of {doc['repeats']} "
            f"interleaved runs each.\n\n"
            + table(["case", "injection", "probe", "recommended", "predicted vs uncoded",
                     "bootstrap 10–90%", "uncoded s", "recommended s", "measured vs uncoded",
                     "prediction off by"], rows)
            + f"\n\n{measured(doc)}")


def auto_live_table(doc: dict) -> str:
    """auto against every fixed one-model row of the same live run (benchmarks/device_auto_live.py)."""
    rows, setup = [], None
    for name, run in doc["runs"].items():
        c, s = run["config"], run["summary"]
        setup = (f"{c['workers']} workers, {c['model']}, global batch {c['batch_size']}, "
                 f"{c['jobs']} jobs a row (1 model × {c['jobs']} steps in every row), "
                 f"median of {c['repeats']} interleaved repeats")
        fixed = [k for k in s["wall_s"] if k not in ("ddp", "auto")]
        rows.append([name, *(f"{s['wall_s'][k]:.2f} ({x(s['vs_ddp'][k])})" for k in ("ddp", *fixed, "auto")),
                     f"`{s['best_fixed']}`", f"{100 * (s['auto_vs_best'] - 1):+.1f}%",
                     f"{s['auto_overhead_ms']:.1f}",
                     f"{s['fixed_overhead_ms_range'][0]:.1f}–{s['fixed_overhead_ms_range'][1]:.1f}"])
    first = next(iter(doc["runs"].values()))["summary"]["wall_s"]
    fixed = [k for k in first if k not in ("ddp", "auto")]
    return (setup + ". Cells: wall seconds (vs DDP).\n\n"
            + table(["run", "ddp", *fixed, "auto", "best fixed", "auto slower than best by",
                     "auto overhead ms/round", "fixed overhead ms/round"], rows)
            + f"\n\n{measured(doc)}")


def sim_auto_vs_fixed(docs):
    d = docs["sim_lambda"]
    rows = []
    for trace_arg, name in (("", "30 rounds"), (" --trace traces/lambda-cnn-w256-r20-canada.csv",
                                                  "20 rounds")):
        auto_s = _run(d, f"gcode simulate{trace_arg} --json" if trace_arg else
                      "gcode simulate --policy paper --dispatch round --json")["schemes"]["auto"]
        fixed = _run(d, f"gcode simulate{trace_arg} --scheme msgc --B 1 --W 2 --lam 256 --policy "
                        "earliest --json")
        rows.append([name, f"{fixed['runtime_s']:.3f}", f"{auto_s['runtime_s']:.3f}",
                     f"{100 * (auto_s['runtime_s'] / fixed['runtime_s'] - 1):+.1f}%"])
    return table(["trace", "M-SGC (1,2,256), earliest policy, s", "auto s", "auto slower by"], rows)


def with_measured(render, stem, *args):
    return lambda docs: render(docs[stem], *args) + f"\n\n{measured(docs[stem])}"


def scale_fixed_s(docs):
    d = docs["bench_scale_fixed_s"]
    rows = [[label, *(f"{v:.1f}" for v in row.values())] for label, row in d["us_per_worker_round"].items()]
    return (f"µs per worker-round, median of {d['rounds'] - 1} rounds, code parameters held fixed "
            "(`benchmarks/bench_scale_fixed_s.py`; a flat row is linear in n):\n\n"
            + table(["scheme", *(f"n={n}" for n in d["ns"])], rows))


VERSUS_METHOD = (
    "Each table is one `gcode bench versus` run (`benchmarks/device_versus.sh` on the device "
    "machines): torch DistributedDataParallel (gloo, or NCCL with a GPU per rank) and gcode's rows "
    "train the same model from the same seed on the same batches, and every row replays one table "
    "of per-(step, worker) injected delays: bursty (B, W, λ) = (1, 2, 2) with a base delay of three "
    "times one worker's measured compute (a straggler sleeps three times the base), or none. A DDP "
    "rank sleeps its delay after computing, before its allreduce; a gcode worker after computing, "
    "before sending. `vs DDP` is DDP's wall time over the row's: above 1 is faster than DDP.\n\n"
    "**Read `trained` first.** DDP trains one model for every step. A gcode row with M > 1 models "
    "(every SR-SGC and M-SGC row, and every `-pipelined` or `-arrival` row) trains M models "
    "round-robin, each getting 1/M of the steps: a fair throughput comparison for someone with M "
    "models to train, not a one-model speed-up. Single runs carry several percent of noise, and "
    "DDP's own wall time moves between runs, so compare rows within one run.")

def netns_planes(doc: dict) -> str:
    """One table per link rate: measured against gcode.sim.network, then the fitted alpha, beta."""
    out = []
    for rate, run in doc["runs"].items():
        ar = max(run["allreduce"], key=lambda r: r["bytes"])
        gathered = sum(g["seconds"] for g in run["gather"] if g["sources"] == run["nodes"])
        star = gathered + run["scatter"][0]["seconds"]
        rows = [[p["what"], f"{p['bytes'] / 1e6:.3g}", ms(p["measured_s"]), ms(p["predicted_s"]),
                 x(p["measured_over_predicted"])] for p in run["model"]["predicted"]]
        ring, gather = run["model"]["fit_ring"], run["model"]["fit_star_gather"]
        load = ", ".join(f"{v:.0f}" for v in run["load_average_before"])
        out += [(f"**{rate}** per link, {run['nodes']} worker nodes, median of {run['repeats']} "
                 f"(load average {load} before, {run['date']}, {run['cpus']} CPUs):"), "",
                table(["transfer", "MB", "measured ms", "model ms", "measured / model"], rows), "",
                (f"A star round's data (gather + scatter, {run['nodes']} x {ar['bytes'] / 1e6:.3g} MB "
                 f"each way) took {ms(star)} ms against {ms(ar['seconds'])} ms for the allreduce of the "
                 f"same gradient. Fitted: ring alpha {1e3 * ring['alpha']:.2f} ms, beta "
                 f"{ring['beta'] / 1e6:.0f} MB/s; star gather alpha {1e3 * gather['alpha']:.1f} ms, "
                 f"beta {gather['beta'] / 1e6:.0f} MB/s."), ""]
    return "\n".join(out).rstrip()


def calibration_setup(doc: dict) -> str:
    """Each setting's nodes, repeats and how busy the shared machine was."""
    parts = []
    for name in doc["report"]["order"]:
        run = doc["settings"][name]
        load = ", ".join(f"{v:.0f}" for v in run["load_average_before"])
        parts.append(f"{name}: {len(run['nodes'])} worker nodes, median of {run['repeats']}, load average "
                     f"{load} before ({run['date']}, {run['cpus']} CPUs)")
    return "Measured " + "; ".join(parts) + "."


def device_collective(doc: dict) -> str:
    rows = [[r["scheme"], ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-", r["accumulate_dtype"],
             f"{r['decoded_jobs']}/{r['jobs']}", r["straggler_slots"], f"{r['max_rel_error']:.1e}",
             "yes" if r["replicas_identical"] else "NO"] for r in doc["rows"]]
    return "\n".join([
        table(["scheme", "params", "accumulator", "jobs decoded", "straggler slots", "max rel. error",
               "replicas identical"], rows), "",
        (f"{doc['world']} ranks sharing {doc['gpus']} {doc['device']} ({doc['backend']}, "
         f"torch {doc['torch']}, d = {doc['numel']:,} parameters, {doc['date']}); a gloo allreduce of "
         f"13 MB of CUDA tensors among "
         f"them took {ms(doc['allreduce_13MB_s'])} ms. {doc['note'][0].upper()}{doc['note'][1:]}.")])


SECTIONS = [
    Section("gcode against torch DDP (`gcode bench versus`)", VERSUS_METHOD, level=2),
    Section("mlp-wide, bursty stragglers", "", ("versus_mlp-wide",), versus("versus_mlp-wide")),
    Section("mlp, bursty stragglers",
            "An earlier run of the same table follows it (another is in the git history of "
            "`benchmarks/results/versus_mlp.json`).",
            ("versus_mlp", "versus_mlp-repeat"),
            lambda d: versus("versus_mlp")(d) + "\n\n" + versus("versus_mlp-repeat")(d)),
    Section("No injected stragglers",
            "The machine's own stragglers only, with gcode's coordinator on the GPU (the default on "
            "that machine) and on the CPU.",
            ("versus_mlp-wide-none", "versus_mlp-wide-none-cpu", "versus_mlp-none", "versus_mlp-none-cpu"),
            lambda d: runs_setup(d) + "\n\n" + runs_table(d, extra={
                "coordinator": lambda doc, r: r.get("coordinator_device"),
                "not overlapped ms/round": lambda doc, r: ms(r.get("exposed_overhead_s_per_round"))})),
    Section("Dispatch at arrival",
            "Each pair ran in one bench run against one DDP row: the `-pipelined` row dispatches a "
            "round when the previous one ends, the `-arrival` row sends a worker its next tasks when "
            "its own results arrive (`--dispatch arrival`); both train the same M models. Where "
            "workers outnumber cores (8 workers on 2 cores) dispatch at arrival can lose.",
            ("versus_mlp-arrival", "versus_mlp-wide-arrival", "versus_mlp-2core-arrival",
             "versus_mlp-2core-8w-arrival"),
            lambda d: runs_setup(d) + "\n\n" + runs_table(d, extra={**COMPUTE, **STRAGGLERS})),
    Section("Coordinator overhead at mlp-wide",
            "The coordinator's overhead per round, and the part of it that workers waited for, "
            "against the round. `versus_mlp-wide-buffers` predates deferred finiteness checks; "
            "`-async-devread` read the checks' flags with one read of a device tensor (which waits "
            "for everything queued before it); `-async` and `-async-b` read each flag from host "
            "memory once it has come back. The second table is `benchmarks/fetch_cost.py` on the "
            "GPU machine: a GPU coordinator's fetch of one round's results by phase, ms a round.",
            ("versus_mlp-wide-async", "versus_mlp-wide-async-b", "versus_mlp-wide-buffers",
             "versus_mlp-wide-async-devread", "fetch_cost_mlp-wide", "fetch_cost_resnet18"),
            lambda d: overhead_table({k: v for k, v in d.items() if k.startswith("versus")}) + "\n\n"
            + fetch_cost_table({k: v for k, v in d.items() if k.startswith("fetch")})),
    Section("ResNet-18 on 16 CPU cores",
            "As many DDP ranks as workers, one core each, on the GPU machine's CPUs (`-32core`: the "
            "2-GPU machine's). One run per device call; the base delay is set from one worker's "
            "compute measured at the start of each call, so it differs between calls, and a larger "
            "base favours gcode. The first runs predate the gap policy, and the first two the shm "
            "transport (they ran on Ray and recorded no transport); `-arrival*` and `-cyclic*` "
            "dispatch at arrival.",
            ("versus_resnet18-cpu", "versus_resnet18-cpu-msgc", "versus_resnet18-cpu-shm",
             "versus_resnet18-cpu-partial", "versus_resnet18-cpu-gap16", "versus_resnet18-cpu-gap8",
             "versus_resnet18-cpu-32core", "versus_resnet18-cpu-gap15", "versus_resnet18-cpu-gap15b",
             "versus_resnet18-cpu-arrival", "versus_resnet18-cpu-cyclic", "versus_resnet18-cpu-cyclic-b",
             "versus_resnet18-cpu-arrival-gap10", "versus_resnet18-cpu-arrival-gap10b"),
            lambda d: runs_table(d, extra=RESNET_CPU_COLS)),
    Section("Equal work spreads on these CPUs",
            "`benchmarks/cpu_spread.py`: single-thread ResNet-18 passes, all processes at once, on "
            "the 16-core machine. DDP pays the same spread in its step.",
            ("cpu_spread_resnet18",), cpu_spread_table, level=4),
    Section("The ResNet-18 runs replayed in the simulator",
            "`benchmarks/sim_replay_live.py`: each worker's measured compute plus its injected delay, "
            "rebuilt from the bench's seed and the run's per-round log, replayed through the "
            "simulator under the run's own policy with round dispatch and at arrival. A run whose "
            "policy cut on-time workers replays too fast: their compute, never reported, is taken "
            "as the round's median. The second table replays the runs under other round-ending "
            "policies, at arrival: a prediction, not a measurement.",
            ("sim_replay_live", "sim_replay_policies"),
            sim_replay_tables, level=4),
    Section("One straggler of slack, simulated",
            "`benchmarks/sim_slack.py`: M-SGC for (1, 2, 3) against (1, 2, 2) on the bench's delay "
            "tables, with compute noise and a share of slow passes, vs a simulated DDP.",
            ("sim_slack",), sim_slack_table, level=4),
    Section("ResNet-18, 8 workers sharing one GPU", "DDP over gloo, since NCCL needs a GPU per rank.",
            ("versus_resnet18-gpu",), versus("versus_resnet18-gpu")),
    Section("Two GPUs, one worker each",
            "One worker and one DDP rank (NCCL) per GPU, with and without bursty injection; workers "
            "read their next batch ahead (the default on GPUs) except in `-noprefetch`. Per-round "
            "phases of the coordinator in ms. The 8-GPU matrix (`benchmarks/device_gpu8.sh`) has "
            "not run.",
            ("versus_resnet18-2gpu-ahead-none", "versus_resnet18-2gpu-ahead",
             "versus_resnet18-2gpu-noprefetch-none", "versus_resnet50-2gpu-ahead-none",
             "versus_resnet50-2gpu-ahead"), gpu2_table),
    Section("Before the shm transport and read-ahead",
            "The same two-GPU tables with Ray's object store as transport (`versus_resnet*-2gpu`, "
            "`-2gpu-none`), then with `shm` and no read-ahead (`-shm`).",
            ("versus_resnet18-2gpu", "versus_resnet18-2gpu-none", "versus_resnet18-2gpu-shm",
             "versus_resnet18-2gpu-shm-none", "versus_resnet50-2gpu", "versus_resnet50-2gpu-none"),
            lambda d: runs_table(d, extra={"transport, coordinator": _where}), level=4),
    Section("Where a GPU worker's time goes",
            "`benchmarks/profile_worker.py`: `data` reads the samples by index and collates them, "
            "`task` is a whole coded gradient (data, weighted backward, gather), `worker` one task as "
            "a worker runs it (parameters in, task, gradient out to page-locked memory), "
            "`worker_ahead` the same with the next task's samples read meanwhile, and `plain` what a "
            "DDP rank computes (forward and backward of an ordinary module, without data).",
            ("profile_worker_resnet18_256", "profile_worker_resnet18_64", "profile_worker_resnet50_256"),
            profile_table, level=4),
    Section("On a 2-core box",
            "4 workers and 4 DDP ranks on 2 cores, with a base delay far above compute. Two later "
            "runs measured M-SGC under other policies, each against its own DDP row.",
            ("versus_mlp-2core", "versus_mlp-2core-partial", "versus_mlp-2core-gap"),
            lambda d: versus("versus_mlp-2core")(d) + "\n\n"
            + runs_table({k: v for k, v in d.items() if k != "versus_mlp-2core"})),
    Section("The collective data plane on a 2-core box",
            "The issue-26 acceptance on this machine: 4 workers and 4 DDP ranks on 2 cores, mlp, "
            "gcode on the collective data plane (the workers hold the replicas, fold their coded "
            "results with the coordinator's coefficients and allreduce them over gloo, as DDP does), "
            "first under bursty stragglers with a 300 ms base delay, then with no injection; last, "
            "uncoded on the star plane with no injection for comparison. The three were run twice, "
            "about 25 minutes apart (the second set after the first); each result is one run with "
            "its own DDP row, on a machine shared with other engineers' work (its load average is "
            "recorded before and after), so runs of one or two seconds without injection vary "
            "with what else ran. The issue asks, on the collective plane, for the best "
            "exact one-model scheme at least 1.5x DDP under the injection and uncoded at least "
            "0.95x DDP without it. coordinator KB/round counts what passes through the coordinator "
            "a round: calls, coded losses and decode coefficients on the collective plane, every "
            "worker's gradient on the star.",
            ("versus_mlp-2core-collective", "versus_mlp-2core-collective-none",
             "versus_mlp-2core-star-none", "versus_mlp-2core-collective-2",
             "versus_mlp-2core-collective-none-2", "versus_mlp-2core-star-none-2"),
            lambda d: "\n\n".join(f"`{stem}`: " + versus(stem)(d) for stem in d)),
    Section("GPU workers: exactness and phases (`benchmarks/bench_gpu.py`)",
            "Coded and uncoded runs from one seed under the same bursty delays. `params vs uncoded` "
            "is ‖Δθ‖/‖θ‖ against the uncoded run on 8 workers; `uncoded-n4` codes nothing but splits "
            "each batch in halves instead of eighths, which sets the fp32 floor; `params vs the same "
            "batch split` compares GC-FR s=1 with it (bit for bit equal on the CPU; cuDNN's backward "
            "kernels are not deterministic on the GPU).",
            ("bench_gpu",), bench_gpu_table, level=2),
    Section("GPU replicas and decoded error (`benchmarks/device_exact.py`)",
            "One process plays the n workers of a GC round with gcode's TaskComputer on ResNet-18 "
            "(random CIFAR-shaped images), so each chunk is computed by each of its s + 1 workers "
            "as workers compute it; every straggler set of size s is decoded in fp64 and compared "
            "with the exact sum of the chunks' gradients (each computed alone, summed in fp64). "
            "`deterministic`: torch's deterministic algorithms, what gcode's GPU workers run under "
            "the group and cyclic codes; `default`: torch's defaults, what they ran before (and FR "
            "still does). `identical replicas`: chunks whose two computations agree bit for bit. "
            "Under the defaults even FR misses the exact sum by about 1e-6: two computations of one "
            "chunk differ by that much on the GPU, and FR (like uncoded training and DDP) inherits "
            "that difference unamplified, while a cyclic decode, which combines replicas with large "
            "coefficients, amplifies it a thousandfold.",
            ("device_exact",), lambda d: device_exact.markdown_table(d["device_exact"]), level=2),
    Section("The simulator on the Lambda traces (`gcode simulate`, `gcode tune`)",
            "`benchmarks/sim_lambda.py` runs these commands and keeps their JSON. The bundled trace "
            "is `traces/lambda-cnn-w256-r30-canada.csv` (256 AWS Lambda workers). Simulated runtimes "
            "are deterministic; a simulation trains no model, and a scheme with delay T needs "
            "M ≥ T+1 models when run live.", level=2),
    Section("What `gcode simulate` prints", "The paper's parameters, `--jobs` the trace's rounds minus "
            "4, the paper policy at μ = 1; the last row is the online auto scheme (docs/AUTO.md: its "
            "default candidates, T ≤ 1, each under its own policy; a run that ends in a delayed "
            "scheme trains two models).", ("sim_lambda",), sim_default),
    Section("Round-ending policy and dispatch", "", ("sim_lambda",), sim_policies),
    Section("Figures the tests pin", "Replay semantics as the authors' code defines them "
            "(docs/SIMULATOR.md).", ("sim_lambda",), sim_pinned),
    Section("Hindsight-best parameters, and the paper's M-SGC over GC",
            "The paper reports M-SGC 16% faster than GC over 480–500 jobs. On these two public traces, "
            "with the grid search's hindsight-best parameters, the gap is small: a Lambda call's "
            "fixed cost dwarfs the load that M-SGC saves, and bursts that break (1, 2, λ) windows "
            "make M-SGC wait for everyone.", ("sim_lambda",), sim_tune),
    Section("auto against a fixed scheme under the same policy",
            "auto as `gcode simulate` runs it (its default candidates, T ≤ 1, each under its own "
            "policy: on the 30-round trace it ends in GC, one model; on the 20-round one it moves "
            "into this M-SGC, two models) against the fixed M-SGC issue 28 compared it with (the "
            "earliest policy; a T = 1 scheme, two models when run live).",
            ("sim_lambda",), sim_auto_vs_fixed),
    Section("Trace replay: hindsight and out of sample (`gcode bench trace`)",
            "Parameters chosen on the first half of each trace (out of sample) or on the evaluated "
            "half itself (hindsight); the auto row is online and the same in both.",
            ("bench_trace",), with_measured(trace.markdown_table, "bench_trace"), level=2),
    Section("auto against the hindsight-best fixed choice and uncoded (`gcode bench auto`)",
            "Simulated on the Lambda traces, Gilbert–Elliott traces generated from seeds and live "
            "runs' logs, under both load models; the reference is the best fixed candidate over the "
            "same grid of schemes, parameters and policies auto chooses from, found in hindsight. "
            "The tuner's settings were chosen on a separate tuning suite (docs/AUTO.md).",
            ("bench_auto",), with_measured(auto.markdown_table, "bench_auto"), level=2),
    Section("`gcode advise` against running its advice (`benchmarks/advise_live.py`)",
            "A short uncoded probe of the model's own gcode.fit functions (gcode.advise.probe) "
            "predicts the recommended scheme's speedup over uncoded gcode; uncoded and the "
            "recommended config then run live under the same injection, interleaved, and the "
            "measured speedup is the ratio of their median runtimes. One model, every step, in "
            "every run.",
            ("advise_live",), lambda d: advise_live_table(d["advise_live"]), level=2),
    Section("auto against every fixed one-model row, live (`benchmarks/device_auto_live.py`)",
            "One model in every row. Each run is one `gcode bench versus` on its own shared table "
            "of injected delays: bursty1 and bursty3, bursty (1,2,2) stragglers one and three "
            "steps long; trace1, a Gilbert–Elliott trace of persistently slow workers (seed 0) "
            "scaled so that a round's slowest worker trails its median by one step. auto with "
            "one model chooses among uncoded and GC only. First the acceptance run: 8 workers, "
            "mlp-wide, on the 16 CPU cores of a GPU machine (one run per case, no repeats); "
            "issue 28 asks auto to be within 5% of the best fixed row and its coordinator "
            "overhead within 1 ms of a fixed scheme's. Then the 2-core box, where other jobs "
            "shared the cores.",
            ("device_auto_live", "auto_live_2core"),
            lambda d: auto_live_table(d["device_auto_live"]) + "\n\n"
            + auto_live_table(d["auto_live_2core"]), level=2),
    Section("Live runs under injected stragglers (`gcode bench live`)",
            "Ray on the 2-core box, one shared pool of workers. uncoded, ignore and gc train one "
            "model; srsgc, msgc and auto (which ends on a T = 1 scheme) train 2 models round-robin, "
            "each on half the jobs, and `final loss` is the mean over the models of each one's last "
            "batch loss, so theirs is higher. `live / sim` is the live wall time over the simulator's, "
            "with one load model calibrated on separate runs for every scheme.",
            ("bench_live",), with_measured(live.markdown_table, "bench_live"), level=2),
    Section("Speed of the simulator and tuner (`gcode bench sim`)",
            "The full hindsight grid, checked identical to a per-round reference loop before any "
            "speed is reported.", ("bench_sim",),
            lambda d: sim.markdown_table(d["bench_sim"], Path(d["bench_sim"]["trace"]).name)
            + f"\n\n{measured(d['bench_sim'])}", level=2),
    Section("Scale: 10,000 workers (`gcode bench scale`)",
            "The simulator and the live coordinator's bookkeeping (no Ray) against n, with the "
            "paper's parameters scaled to n, on a synthetic trace resampled from the Lambda trace. "
            "Cyclic codes' per-worker cost grows with s, which the paper scales with n; with s held "
            "fixed it is flat (second table).",
            ("bench_scale", "bench_scale_fixed_s"),
            lambda d: scale.markdown_table(d["bench_scale"]) + f"\n\n{measured(d['bench_scale'])}\n\n"
            + scale_fixed_s(d), level=2),
    Section("Both data planes across emulated nodes (`cluster/netns.sh`)",
            "Four Ray worker nodes and a head, each in its own network namespace with its link limited by "
            "tc (benchmarks/netns_collective.py): a gloo allreduce among one actor per worker node (the "
            "collective plane), and the star's two halves through Ray's object store, 4 arrays gathered "
            "into an actor on the head and one array fetched from it by all four. The model's figure is "
            "gcode.sim.network at the link's nominal rate with no latency. These links share one 2-core "
            "machine's CPUs with everything else running on it (the load average is recorded).",
            ("netns_collective",), lambda d: netns_planes(d["netns_collective"]), level=2),
    Section("The collective data plane on 16 cores (`gcode bench versus --data-plane`)",
            "mlp-wide, 8 CPU workers on one 16-core machine with a GPU (benchmarks/device_collective.sh): "
            "gcode on the collective plane (the workers fold their coded results and allreduce them with "
            "gloo; only coefficients and done reports pass through the coordinator) against DDP, with no "
            "injection and with the bench's bursty injection, then the star for its coordinator bytes. "
            "Issue 26 asks, on such a machine: collective, no injection, uncoded at least 0.95x DDP; "
            "bursty, the best exact one-model scheme at least 1.4x DDP; at most 64 KB through the "
            "coordinator per round. The collective runs are with each decode riding on the next "
            "compute call (one Ray call per worker per round); the star's row is from an earlier "
            "checkout, for its coordinator bytes. `plane ms/decode` is a worker's mean seconds "
            "per decode by phase: fold, allreduce, the replica's step, and the replica check "
            "(every tenth decode, averaged).",
            ("versus_mlp-wide-collective-none", "versus_mlp-wide-collective", "versus_mlp-wide-star-none"),
            lambda d: runs_setup(d) + "\n\n" + runs_table(d, extra={
                "plane": lambda doc, r: r.get("data_plane"),
                "coordinator KB/round": lambda doc, r: "-" if r.get("coordinator_bytes_per_round") is None
                else f"{r['coordinator_bytes_per_round'] / 1e3:,.1f}",
                "overhead ms/round": lambda doc, r: ms(r.get("overhead_s_per_round")),
                "plane ms/decode (fold/allreduce/step/check)": lambda doc, r: "-"
                if not r.get("plane_s_per_decode") else "/".join(
                    f"{1e3 * r['plane_s_per_decode'].get(k, 0.0):.0f}"
                    for k in ("fold", "allreduce", "step", "check"))}), level=2),
    Section("Both live planes across emulated nodes (`benchmarks/netns_live.py`)",
            "gcode train on the star and on the collective plane, eight (or four) Ray worker nodes and a "
            "head, each node in its own network namespace with its link limited by tc (cluster/netns.sh): "
            "mlp-wide, one model, uncoded, no injection, with 4 or 8 workers. Predicted here: the run's "
            "measured compute per round plus the plane's communication by gcode.sim.network with the "
            "link's calibrated alpha and beta, the links alone; the model with the planes' own work "
            "(fold, replica step, check, the coordinator's calls) is in the next section. With more "
            "workers than nodes (issue 26's four nodes with two workers each) the model has two workers "
            "on each node's link. All nodes share one 2-core machine's CPUs with other work (the load "
            "average is recorded).",
            ("netns_live",), lambda d: "\n\n".join(
                netns_live.markdown(e) + "\n\n" + f"Measured {e['date']}, {e['cpus']} CPUs, load average "
                + ", ".join(f"{v:.0f}" for v in e["load_average_before"]) + " before."
                for e in d["netns_live"]["runs"].values()), level=2),
    Section("The network model calibrated on measured links (`benchmarks/network_calibration.py`)",
            "Eight Ray worker nodes and a head, each in its own network namespace with its link limited "
            "by tc (cluster/netns.sh), or on loopback addresses (cluster/local.sh). From calibration "
            "transfers (gloo ring allreduces, the star's gathers and scatters through Ray's object "
            "store, control round trips) alpha and beta are fitted per setting; the model "
            "(gcode.sim.network) then predicts each plane's round communication at n = 4 and 8, which "
            "is measured on the same cluster: a star round (parameters out through the head's link, n "
            "gradients back) and a collective round (the coefficients out, fold, gloo allreduce, the done "
            "reports back). No compute: the workers hold ready-made results. Nominal: the model at the "
            "link's rate with no latency. The ring is fitted with the shared host's term (the bytes all "
            "nodes send together: they share this machine's CPUs) and without it. Then the live runs "
            "of the previous section, predicted with the planes' own work (gcode.sim.plane_work: fold, "
            "replica step and check per parameter, the coordinator's calls) calibrated in place from "
            "the runs' recorded phases, each run with the terms of another run (the other n at its "
            "rate, or the other rate), and a dedicated core's work terms measured alone. All nodes "
            "share one 2-core machine's CPUs with everything else running on it.",
            ("network_calibration", "netns_live_repeat"),
            lambda d: network_calibration.markdown_table(d["network_calibration"]) + "\n\n"
            + calibration_setup(d["network_calibration"]), level=2),
    Section("Both planes at scale by the network model (`gcode bench scale --network`)",
            "Predictions, not measurements: each plane's round for n = 8 to 1,024 at ResNet-18's and 10^9 "
            "parameters under the bench's default network (docs/SCALING.md shows the calibrated ones), "
            "with the planes' own work (a dedicated core's fold, Adam step and check, measured here, and "
            "the collective's fp64 accumulators, which M-SGC needs); 'links only' is the star / "
            "collective ratio without the work terms, and the last line says where the star pays both "
            "ways.",
            ("bench_scale_network",), lambda d: scale_network.markdown_table(d["bench_scale_network"]),
            level=2),
    Section("The collective plane on a GPU (`benchmarks/device_collective.py`)",
            "Ranks sharing one GPU form a gloo group through the collective plane; per scheme, each "
            "computes its coded results from an MLP's real partial gradients on the GPU, folds the "
            "decode coefficients of its own results into a GPU accumulator and the ranks allreduce it "
            "once the job is decodable, under random conforming stragglers. Each decoded sum is checked "
            "against the direct fp64 sum of the job's partial gradients, and the ranks' sums and model "
            "replicas (after an SGD step with each sum) by a checksum allreduce. No model is trained "
            "beyond those steps.",
            ("device_collective",), lambda d: device_collective(d["device_collective"]), level=2),
    Section("Gradient codes: load, certificate and the worst decode a search finds "
            "(`benchmarks/bench_codes.py`)",
            "Per (n, s), the cyclic code (the papers'), the group code (gcode's default) and FR "
            "(docs/SCHEMES.md, What is guaranteed): load and its excess over (s+1)/n, message dtype, "
            "the certified worst amplification A and error factor E (cyclic codes beyond small n "
            "are checked per decode set instead), the worst unchecked decode an adversarial search "
            "found (what gcode decoded before the per-set check) and what gcode decodes now on the "
            "searched patterns: its worst relative error, failures, and rounds it waited because a "
            "set missed the budget. Simulated decodes of random fp32 chunk gradients; no model is "
            "trained.",
            ("bench_codes",), lambda d: bench_codes.results_markdown(d["bench_codes"]), level=2),
    Section("Decode latency and throughput (`gcode bench decode`)",
            "One GC job decoded from n−s fp32 results of d values: the exact blocked fp64 sum, a plain "
            "fp32 gemv (the memory-bandwidth reference, not exact), the streaming critical path (one "
            "fp64 axpy after the last arrival) and a new straggler set's coefficient solve.",
            ("bench_decode",), with_measured(decode.markdown_table, "bench_decode"), level=2),
]

# JSON files deliberately not shown, with the reason.
UNSHOWN: dict[str, str] = {
    "fit_acceptance": "issue 30's acceptance of gcode.fit (schedules, clipping, bf16, callbacks, "
                      "checkpoints); its table is in docs/TRAINING.md, \"Acceptance: a Ray "
                      "Train-style script under gcode.fit\"",
    "exact_blocks_codes": "how often the canonical-sum mode's rounding to fp32 absorbs a code's fp64 "
                          "decode error; its figures are in docs/TRAINING.md, \"Bit-identical runs\"",
    "exact_blocks_cost": "a worker's task in the canonical-sum mode against the default, as ratios; "
                         "its figures are in docs/TRAINING.md, \"Bit-identical runs\"",
}

HEADLINES = [  # one model: the best coded row where stragglers are injected, uncoded where not
    Headline(("versus_mlp-wide",), "gc-s2-earliest", "mlp-wide, bursty stragglers"),
    Headline(("versus_mlp", "versus_mlp-repeat"), "gc-s2-earliest", "mlp, bursty stragglers"),
    Headline(("versus_mlp-wide-none",), "uncoded", "No injected stragglers"),
    Headline(("versus_mlp-none",), "uncoded", "No injected stragglers"),
    Headline(("versus_resnet18-cpu",), "gc-s2-earliest", "ResNet-18 on 16 CPU cores"),
    Headline(("versus_resnet18-2gpu-ahead",), "gc-s1-earliest", "Two GPUs, one worker each"),
    Headline(("versus_resnet50-2gpu-ahead",), "gc-s1-earliest", "Two GPUs, one worker each"),
    Headline(("versus_resnet18-2gpu-ahead-none",), "uncoded", "Two GPUs, one worker each"),
    Headline(("versus_resnet18-gpu",), "gc-s2-earliest", "ResNet-18, 8 workers sharing one GPU"),
    Headline(("versus_mlp-2core",), "gc-s2-earliest", "On a 2-core box", "delays far above compute"),
    Headline(("versus_mlp-wide-arrival", "versus_mlp-wide-async", "versus_mlp-wide-async-b",
              "versus_mlp-wide-buffers"), "msgc-gap-arrival", "Coordinator overhead at mlp-wide"),
    Headline(("versus_mlp-arrival",), "gc-s2-earliest-arrival", "Dispatch at arrival"),
    Headline(("versus_resnet18-cpu-arrival", "versus_resnet18-cpu-arrival-gap10",
              "versus_resnet18-cpu-arrival-gap10b"), "msgc-gap-arrival", "ResNet-18 on 16 CPU cores",
             "gap 0.15 or 0.1"),
]


def headline_rows(docs: dict, anchors: dict[str, str]) -> tuple[list[list[str]], list[list[str]]]:
    """The README's headline tables: one figure a row, the range over a setup's runs; (the rows
    that train one model, the rows that train M >= 2). ``anchors`` maps each section's heading
    to its anchor."""
    rows = []
    for h in HEADLINES:
        found = [find_row(docs[f], h.row) for f in h.files]
        lo, hi = min(r["vs_ddp"] for r in found), max(r["vs_ddp"] for r in found)
        ratio = x(lo) if len(found) == 1 else f"{x(lo)[:-1]}–{x(hi)} ({len(found)} runs)"
        link = f"[{h.section.replace('`', '')}](docs/RESULTS.md#{anchors[h.section]})"
        setup = short_setup(docs[h.files[0]]) + (f" ({h.note})" if h.note else "")
        rows.append((models(found[0]), [setup, f"`{h.row}`", trained(found[0]), f"**{ratio}**", link]))
    return [r for m, r in rows if m == 1], [r for m, r in rows if m > 1]
