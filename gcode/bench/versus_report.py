"""How a ``gcode bench versus`` result is shown: its markdown table and its plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..paths import save_figure


def markdown_table(result: dict) -> str:
    """A header line, then one table per number of models M (one-model rows apart from M-model
    rows, each set against DDP training the same M models for the same steps per model), the
    straggler counts (bursty injection) and the best exact gcode row per M."""
    c = result["config"]
    inj = c["inject"]
    if inj.get("trace"):
        what = f"trace {Path(inj['trace']).name} x {inj.get('time_scale', 1.0):.3g}"
    elif inj.get("model"):
        what = f"injection {inj['model']} {inj.get('params') or ''}"
    else:
        what = "no injection"
    lines = [f"gcode vs torch DDP: {c['model']} ({c['num_params']:,} parameters), {c['workers']} "
             f"workers, global batch {c['batch_size']}, {c['jobs']} steps, {what}; one worker's "
             f"compute {1e3 * c['compute_s_per_worker']:.1f} ms"
             + (f"; gcode's coordinator on {c['coordinator_device']}" if "coordinator_device" in c
                else "")
             + "".join(f", transport {t}" for t in sorted(
                 {r["transport"] for r in result["rows"] if r.get("transport")}))
             + "".join(f", data plane {p}" + (" with zero=1" if z else "") for p, z in sorted(
                 {(r["data_plane"], r.get("zero", 0)) for r in result["rows"] if r.get("data_plane")}))
             + "."]
    for m in sorted({row_models(r) for r in result["rows"]}):
        rows = [r for r in result["rows"] if row_models(r) == m]
        lines += ["", _group_title(m, rows, c["jobs"]), "",
                  ("| system | scheme | params | models | steps/model | wall s | vs DDP | rounds | "
                   "waits | compute ms/round | overhead ms/round | not overlapped | "
                   "coordinator KB/round |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ms = lambda v: "-" if v is None else f"{1e3 * v:.1f}"
            kb = lambda v: "-" if v is None else f"{v / 1024:,.1f}"
            lines.append(f"| {r['system']} | {r.get('row', r['scheme'])} | {_params_text(r['params'])} | "
                         f"{m} | {steps_text(r)} | {r['wall_s']:.2f} | {r['vs_ddp']:.3f}x | "
                         f"{r.get('rounds', r['steps'])} | {r.get('waits', '-')} | "
                         f"{ms(r['compute_s_per_round'])} | {ms(r['overhead_s_per_round'])} | "
                         f"{ms(r.get('exposed_overhead_s_per_round'))} | "
                         f"{kb(r.get('coordinator_bytes_per_round'))} |")
    counted = [r for r in result["rows"] if r.get("on_time_declared") is not None]
    if counted:
        lines += ["", "Stragglers per row (injected / on-time workers cut / injected ones waited "
                      "for): " + "; ".join(f"{r['row']} {r['stragglers_injected']} / "
                                          f"{r['on_time_declared']} / {r['injected_waited_for']}"
                                          for r in counted) + "."]
    best = result.get("best_exact_by_models")
    if best is None and result.get("best_exact"):  # a result written before models were kept
        best = {"1": result["best_exact"]}
    for m, b in sorted((best or {}).items(), key=lambda kv: int(kv[0])):
        what = "one model" if m == "1" else f"{m} models, each against DDP training {m} models"
        lines += ["", f"Best exact gcode scheme ({what}): {b['row']}, {b['vs_ddp']:.3f}x DDP."]
    return "\n".join(lines)


def row_models(row: dict) -> int:
    """The models a row trained: its ``models``, else its params' (rows written before the key)."""
    return int(row.get("models") or row.get("params", {}).get("models") or 1)


def steps_text(row: dict) -> str:
    """The steps each model got: ``steps_per_model``; for a row written before that key, what
    its steps and models imply (job t trains model t mod M: 40 steps on 3 models are 13–14),
    or "-" where it does not say how many models it trained."""
    if row.get("steps_per_model") is not None:
        return str(row["steps_per_model"])
    if row.get("models") or row.get("params", {}).get("models") or row.get("system") == "ddp":
        m = row_models(row)
        lo, hi = row["steps"] // m, -(-row["steps"] // m)
        return str(lo) if lo == hi else f"{lo}–{hi}"
    return "-"


def _group_title(models: int, rows: list, jobs: int) -> str:
    if models == 1:
        return f"One model, {jobs} steps:"
    if any(r["system"] == "ddp" for r in rows):
        return (f"{models} models trained round-robin, each about {jobs // models} steps; vs DDP "
                f"is against DDP training the same {models} models for the same steps per model:")
    return (f"{models} models trained round-robin, each about {jobs // models} steps; written "
            f"before DDP trained M models, so vs DDP is against DDP training one model for the "
            f"same total steps:")


def _params_text(params: dict) -> str:
    """Row parameters for a table cell; an auto scheme's segments as a count and the last.
    The GC code shows only when it is not FR, the bench's own rows' code."""
    shown = dict(params)
    segments = shown.pop("segments", None)
    text = _pairs(shown)
    if segments:
        last = {k: v for k, v in segments[-1].items() if k not in ("start_job", "scheme")}
        text = f"{len(segments)} segments, last {segments[-1]['scheme']}({_pairs(last)})," + text
    return text


def _pairs(params: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items()
                    if not (k == "gc_code" and v == "fr"))


def plot(result: dict, out_dir) -> list:
    """Writes the result's PNG into ``out_dir`` (wall time and vs DDP per row; gcode's compute
    and coordinator overhead per round); returns its path in a list."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["rows"]
    names = [r.get("row", r["scheme"]) for r in rows]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = ["tab:gray" if r["system"] == "ddp" else "tab:blue" for r in rows]
    ax.bar(range(len(rows)), [r["wall_s"] for r in rows], color=colors)
    for i, r in enumerate(rows):
        ax.text(i, r["wall_s"], f"{r['vs_ddp']:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.axhline(rows[0]["wall_s"], color="tab:gray", lw=0.8, ls="--")
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("wall seconds (lower is better)")
    ax.set_title(f"{result['config']['model']}: wall time, ratio = DDP / row", fontsize=9)
    g = [r for r in rows if r["system"] == "gcode"]
    x = np.arange(len(g))
    comp = [1e3 * r["compute_s_per_round"] for r in g]
    over = [1e3 * r["overhead_s_per_round"] for r in g]
    bx.bar(x, comp, label="worker compute", color="tab:green")
    bx.bar(x, over, bottom=comp, label="coordinator overhead", color="tab:red")
    bx.set_xticks(x, [r.get("row") for r in g], rotation=30, ha="right", fontsize=8)
    bx.set_ylabel("ms per round")
    bx.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    bx.set_title("gcode per round: compute and coordinator overhead", fontsize=9)
    fig.tight_layout()
    path = Path(out_dir) / f"bench_versus_{result['config']['model']}.png"
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return [path]
