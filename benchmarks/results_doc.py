"""How docs/RESULTS.md and the README's headline table are built from benchmarks/results/*.json.

A document is an ordered list of ``Section``s (``results_index.py``). A section names the JSON
files it shows, a heading, a short context paragraph (what was measured and how to read it) and
a renderer that turns the loaded files into markdown. Every figure in the output comes from a
JSON file through a renderer: context paragraphs hold no measured numbers.

The helpers here render what most sections need: plain tables, a result's machine line, and
``gcode bench versus`` results with each row's number of models and steps per model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
Docs = dict  # file stem -> the loaded JSON


@dataclass(frozen=True)
class Section:
    """One heading of docs/RESULTS.md. ``render(docs)`` gets ``{stem: json}`` for ``files``
    (in that order) and returns markdown; a section without files is a heading and context."""
    heading: str
    context: str = ""
    files: tuple[str, ...] = ()
    render: Callable[[Docs], str] | None = None
    level: int = 3

    @property
    def anchor(self) -> str:
        """GitHub's anchor for the heading."""
        keep = [c for c in self.heading.lower() if c.isalnum() or c in " -_"]
        return "".join(keep).replace(" ", "-")


@dataclass(frozen=True)
class Headline:
    """One row of the README's headline table: a row of one or more ``bench versus`` results
    of one setup (shown as the range over them) and the RESULTS.md section that explains it.
    The setup is read from the first file; ``note`` adds to it."""
    files: tuple[str, ...]
    row: str
    section: str
    note: str = ""


def load(stem: str):
    return json.loads((RESULTS / f"{stem}.json").read_text())


def load_all(stems) -> Docs:
    return {s: load(s) for s in stems}


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def x(ratio: float | None, digits: int = 2) -> str:
    return "-" if ratio is None else f"{ratio:.{digits}f}x"


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:.1f}"


def machine(doc: dict) -> str:
    """'2026-11-30, x86_64 Linux, 16 CPUs, Python 3.12.3, NVIDIA H200' from a result's
    environment (and a versus result's GPU)."""
    env = doc.get("environment") or {}
    parts = [env.get("date"), " ".join(p for p in (env.get("machine"), env.get("system")) if p),
             f"{env['cpus']} CPUs" if env.get("cpus") else None,
             f"Python {env['python']}" if env.get("python") else None,
             (doc.get("config") or {}).get("gpu") or doc.get("gpu")]
    return ", ".join(p for p in parts if p)


def measured(doc: dict) -> str:
    return f"Measured {machine(doc)}."


# --- gcode bench versus ------------------------------------------------------------------------

def models(row: dict) -> int:
    return row.get("models") or row["params"].get("models") or 1


def steps_each(row: dict) -> str:
    """Steps each model got: job t trains model t mod M, so 40 jobs on 3 models are 13–14."""
    if row.get("steps_per_model") is not None:
        return str(row["steps_per_model"])
    m, steps = models(row), row["steps"]
    lo, hi = steps // m, -(-steps // m)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def trained(row: dict) -> str:
    """'1 model × 40 steps' or '3 models × 13–14 steps'."""
    m = models(row)
    return f"{m} model{'s' if m > 1 else ''} × {steps_each(row)} steps"


def params_text(row: dict) -> str:
    from gcode.bench.versus_report import _params_text
    return _params_text({k: v for k, v in row["params"].items() if k != "models"})


def gcode_rows(doc: dict, names=None) -> list[dict]:
    rows = [r for r in doc["rows"] if r["system"] == "gcode"]
    return rows if names is None else [r for r in rows if r.get("row") in names]


def ddp_row(doc: dict, m: int = 1) -> dict:
    """The DDP row that trained ``m`` models; results written before DDP trained M models have
    only the one-model row, which every row's ratio was taken against."""
    ddps = [r for r in doc["rows"] if r["system"] == "ddp"]
    return next((r for r in ddps if models(r) == m), ddps[0])


def same_models_ddp(doc: dict, row: dict) -> bool:
    """Whether ``row``'s vs DDP is against DDP training its own number of models."""
    return models(ddp_row(doc, models(row))) == models(row)


def by_models(rows: list[dict]) -> list[tuple[int, list[dict]]]:
    """Rows grouped by the number of models they trained, one model first."""
    return [(m, [r for r in rows if models(r) == m]) for m in sorted({models(r) for r in rows})]


def models_title(doc: dict, m: int, rows: list[dict]) -> str:
    """The sentence above one number of models' table: what the ratio compares."""
    if m == 1:
        return "One model:"
    if all(same_models_ddp(doc, r) for r in rows):
        return (f"{m} models trained round-robin (not one model trained faster): vs DDP is "
                f"against DDP training the same {m} models for the same steps per model.")
    return (f"{m} models trained round-robin (not one model trained faster): written before "
            f"DDP trained M models, so vs DDP is against DDP training one model for the same "
            f"total steps, a throughput comparison for someone with {m} models to train.")


def find_row(doc: dict, name: str) -> dict:
    return next(r for r in doc["rows"] if r.get("row", r["scheme"]) == name)


def setup_parts(doc: dict) -> list[str]:
    """A versus result's setup, part by part: model, workers, batch, jobs, injection,
    transport and coordinator, repeats, machine."""
    c = doc["config"]
    inj = c.get("inject") or {}
    if inj.get("trace"):
        what = f"the trace {Path(inj['trace']).name} at time scale {inj.get('time_scale', 1.0):.3g}"
    elif inj.get("model"):
        p = inj.get("params") or {}
        pattern = ",".join(str(p[k]) for k in ("B", "W", "lam") if k in p)
        what = (f"{inj['model']} ({pattern}) injection, base delay {1e3 * p['base']:.0f} ms"
                if "base" in p else f"{inj['model']} injection")
    else:
        what = "no injection"
    gpus = c.get("gpus_per_worker") or 0
    coords = sorted({f"{r.get('transport') or 'ray'} transport, coordinator on {r['coordinator_device']}"
                     for r in gcode_rows(doc) if r.get("coordinator_device")})
    repeats = c.get("repeats") or 1
    planes = [f"{p} data plane" for p in sorted({r["data_plane"] for r in gcode_rows(doc)
                                                 if r.get("data_plane")})]
    load = doc.get("load_average")
    shared = ([f"load average (1 min) {load['before'][0]:.1f} before and {load['after'][0]:.1f} "
               f"after on a machine shared with other work"] if load else [])
    return [f"{c['model']} ({c['num_params']:,} parameters)",
            f"{c['workers']} workers and {c['workers']} DDP ranks"
            + (f" ({gpus:g} GPU each)" if gpus else " on CPUs"),
            f"global batch {c['batch_size']}", f"{c['jobs']} jobs a row", what, *coords, *planes,
            f"median of {repeats} interleaved repeats" if repeats > 1 else "one run",
            f"measured {machine(doc)}", *shared]


def short_setup(doc: dict) -> str:
    """'16 CPUs, 8 workers, mlp-wide, bursty' or '2 GPUs, one worker each, resnet18, none'."""
    c, env = doc["config"], doc.get("environment") or {}
    gpus, n = c.get("gpus_per_worker") or 0, c["workers"]
    where = (f"{n} GPUs, one worker each" if gpus >= 1 else
             f"1 GPU shared by {n} workers" if gpus else f"{env.get('cpus')} CPUs, {n} workers")
    inj = (c.get("inject") or {}).get("model") or ("trace" if (c.get("inject") or {}).get("trace")
                                                   else "no injection")
    return f"{where}, {c['model']}, {inj}"


def versus_setup(doc: dict) -> str:
    return "; ".join(setup_parts(doc)) + "."


def versus_table(doc: dict, names=None) -> str:
    """A bench versus result's rows, one table per number of models M (each with the DDP row it
    is compared with), each row with its models and steps."""
    parts = []
    bytes_kept = any(r.get("coordinator_bytes_per_round") is not None for r in gcode_rows(doc, names))
    kb = {"coordinator KB/round": lambda r: "-" if r.get("coordinator_bytes_per_round") is None
          else f"{r['coordinator_bytes_per_round'] / 1024:,.1f}"} if bytes_kept else {}
    for m, rows in by_models(gcode_rows(doc, names)):
        ddp = ddp_row(doc, m)
        lines = [["ddp", trained(ddp), ddp["params"].get("backend", ""), f"{ddp['wall_s']:.2f}",
                  "1.00x", "-", ms(ddp["compute_s_per_round"]), "-", "-", *("-" for _ in kb)]]
        for r in rows:
            lines.append([r["row"], trained(r), params_text(r), f"{r['wall_s']:.2f}",
                          x(r["vs_ddp"], 3), r.get("waits", "-"), ms(r["compute_s_per_round"]),
                          ms(r["overhead_s_per_round"]), ms(r.get("exposed_overhead_s_per_round")),
                          *(fn(r) for fn in kb.values())])
        parts.append(models_title(doc, m, rows) + "\n\n" + table(
            ["row", "trained", "params", "wall s", "vs DDP", "waits", "compute ms/round",
             "overhead ms/round", "not overlapped", *kb], lines))
    out = "\n\n".join(parts)
    counted = [r for r in gcode_rows(doc, names) if r.get("on_time_declared") is not None]
    if counted:
        out += ("\n\nStragglers (injected / on-time workers cut / injected ones waited for): "
                + "; ".join(f"{r['row']} {r['stragglers_injected']} / {r['on_time_declared']} / "
                            f"{r['injected_waited_for']}" for r in counted) + ".")
    return out


def versus(doc_stem: str, names=None) -> Callable[[Docs], str]:
    """Renderer: one result's setup sentence and table."""
    return lambda docs: versus_setup(docs[doc_stem]) + "\n\n" + versus_table(docs[doc_stem], names)


def runs_table(docs: Docs, names=None, extra: dict | None = None) -> str:
    """Several versus results, one line per gcode row: the run, its DDP, the row, what it
    trained and its ratio; one table per number of models. ``extra`` adds columns:
    {header: fn(doc, row) -> cell}."""
    extra = extra or {}
    found = [(stem, doc, r) for stem, doc in docs.items() for r in gcode_rows(doc, names)]
    parts = []
    for m in sorted({models(r) for _, _, r in found}):
        rows = [[f"`{stem}`", trained(ddp_row(doc, m)), f"{ddp_row(doc, m)['wall_s']:.2f}", r["row"],
                 trained(r), f"{r['wall_s']:.2f}", x(r["vs_ddp"], 3),
                 *(fn(doc, r) for fn in extra.values())]
                for stem, doc, r in found if models(r) == m]
        title = "" if m == 1 and len({models(r) for _, _, r in found}) == 1 else (
            "One model:" if m == 1 else _runs_title(m, [(d, r) for _, d, r in found if models(r) == m]))
        parts.append((title + "\n\n" if title else "") + table(
            ["run", "DDP trained", "DDP wall s", "row", "trained", "wall s", "vs DDP", *extra], rows))
    return "\n\n".join(parts)


def _runs_title(m: int, pairs: list) -> str:
    same = [same_models_ddp(d, r) for d, r in pairs]
    if all(same):
        return (f"{m} models trained round-robin (not one model trained faster), each against DDP "
                f"training the same {m} models:")
    if not any(same):
        return (f"{m} models trained round-robin (not one model trained faster), written before DDP "
                f"trained M models: each against DDP training one model for the same total steps:")
    return (f"{m} models trained round-robin (not one model trained faster); the DDP trained "
            f"column says what each ratio is against:")


def runs_setup(docs: Docs) -> str:
    """The setup of several versus results: what they share, then each run's own parts."""
    parts = {stem: setup_parts(doc) for stem, doc in docs.items()}
    common = [p for p in next(iter(parts.values())) if all(p in ps for ps in parts.values())]
    lines = ["All runs: " + "; ".join(common) + "." if len(docs) > 1 else versus_setup(*docs.values())]
    if len(docs) > 1:
        lines += [f"- `{stem}`: " + "; ".join(p for p in ps if p not in common) + "."
                  for stem, ps in parts.items() if any(p not in common for p in ps)]
    return "\n".join(lines)
