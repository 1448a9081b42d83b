"""PNG plots of a run log (``gcode plot``), drawn with matplotlib's Agg backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..paths import save_figure
from .messages import RoundRecord, RunConfig, arrays, describe_params


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _title(cfg: RunConfig) -> str:
    return f"{cfg.scheme} ({describe_params(cfg)}), n={cfg.n}"


#: rounds x workers cells a heatmap may have (the arrays behind it stay well under 1 GiB)
MAX_CELLS = 20_000_000


def plot_run(cfg: RunConfig, rounds: Sequence[RoundRecord], out_dir: str | Path,
             stem: str = "run") -> tuple[list[Path], list[str]]:
    """Write the timeline, straggler heatmap and (when there are losses) loss plots.

    Returns (written paths, notes about skipped plots). ValueError when there are no rounds,
    or more rounds x workers than :data:`MAX_CELLS` (checked before anything is allocated).
    The loss plot shows each decoded job's batch loss and, when the run evaluated, the held-out
    loss, each labelled.
    """
    if not rounds:
        raise ValueError("the run log has no rounds to plot")
    if len(rounds) * max(cfg.n, 1) > MAX_CELLS:
        raise ValueError(f"{len(rounds)} rounds x n={cfg.n} workers is more than the "
                         f"{MAX_CELLS} cells gcode plot draws")
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a = arrays(rounds, cfg.n)
    written, notes = [], []

    # 1. round-duration timeline: each round a bar from its start to its end in run time
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    ends = a["wall_time_s"]
    starts = ends - a["duration_s"]
    colors = np.where(a["fell_back"], "tab:red", "tab:blue")
    ax.bar(starts, a["duration_s"], width=a["duration_s"], align="edge", color=colors,
           edgecolor="white", linewidth=0.5)
    ax.set_xlabel("run time at round start (s)" + (" (simulated)" if cfg.source == 1 else ""))
    ax.set_ylabel("round duration (s)")
    ax.set_title(f"Round durations: {_title(cfg)}; red = fell back ({int(a['fell_back'].sum())})")
    ax.grid(axis="y", alpha=0.3)
    written.append(_save(fig, out / f"{stem}_timeline.png", plt))

    # 2. straggler heatmap: 0 on time, 1 late but waited for (fell back), 2 straggler
    state = np.where(a["straggler"], 2, np.where(a["late"], 1, 0)).T  # (workers, rounds)
    fig, ax = plt.subplots(figsize=(10, max(3, min(12, 0.12 * cfg.n + 2))), dpi=100)
    from matplotlib.colors import ListedColormap
    cmap = ListedColormap(["#e8eef6", "#f4a742", "#c0392b"])
    im = ax.imshow(state, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=2,
                   extent=(a["round"][0] - 0.5, a["round"][-1] + 0.5, cfg.n - 0.5, -0.5))
    cbar = fig.colorbar(im, ax=ax, ticks=[1 / 3, 1, 5 / 3])
    cbar.ax.set_yticklabels(["on time", "late (waited)", "straggler"])
    ax.set_xlabel("round")
    ax.set_ylabel("worker")
    ax.set_title(f"Stragglers per round: {_title(cfg)}")
    written.append(_save(fig, out / f"{stem}_stragglers.png", plt))

    # 3. per-model loss against wall time
    series: dict[int, list[tuple[float, float]]] = {}
    held_out: dict[int, list[tuple[float, float]]] = {}
    for rec in rounds:
        for loss in rec.losses:
            series.setdefault(loss.model, []).append((rec.wall_time_s, loss.loss))
        for e in rec.evals:
            held_out.setdefault(e.model, []).append((rec.wall_time_s, e.loss))
    if series:
        fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
        for model in sorted(series):
            t, v = np.array(series[model]).T
            line, = ax.plot(t, v, marker=".", lw=0.8,
                            label=f"model {model}: batch loss of each decoded job")
            if model in held_out:
                t, v = np.array(held_out[model]).T
                ax.plot(t, v, marker="o", ls="--", color=line.get_color(),
                        label=f"model {model}: held-out loss")
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("loss (mean per sample)")
        ax.set_title(f"Loss per model: {_title(cfg)}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the data
        written.append(_save(fig, out / f"{stem}_loss.png", plt))
    else:
        notes.append("no losses in this log (a simulator log has none): skipped the loss plot")
    return written, notes


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path
