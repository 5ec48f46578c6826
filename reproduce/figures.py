"""Figure helpers every paper's report shares: a figure to a PNG file, per-bin bars with the probe
batches as points, the accuracy of each cell with its interval."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from analysis.plot_style import OKABE_ITO

DPI = 130


def save(fig, out_dir, name: str) -> Path:
    path = Path(out_dir) / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def bars_with_points(ax, labels, per_batch: list[list[float]], series: str = "", color=None, offset=0.0,
                     width=0.8, log=False):
    """Mean over batches of each bin as a bar, each batch as a point."""
    arr = np.array([[np.nan if v is None else v for v in row] for row in per_batch], dtype=float)
    x = np.arange(len(labels)) + offset
    mean = np.nanmean(arr, axis=0) if len(arr) else np.full(len(labels), np.nan)
    ax.bar(x, mean, width=width, color=color or OKABE_ITO[0], alpha=0.75, label=series or None)
    for row in arr:
        ax.plot(x, row, "o", color="black", markersize=2.5, alpha=0.6)
    ax.set_xticks(np.arange(len(labels)), labels)
    if log:
        ax.set_yscale("log")
    return ax


def accuracy_panel(ax, source, key: str, order, metric: str = "final_eval_accuracy", labels=None):
    """Each cell's mean ``metric`` over its completed seeds (bar), every seed (point), the warm start
    (dashed line)."""
    from analysis.sources import runs_frame

    df = runs_frame(source)
    df = df[df["status"] == "completed"]
    for i, v in enumerate(order):
        vals = df.loc[df[key].astype(str) == str(v), metric].astype(float).to_numpy()
        if len(vals):
            ax.bar(i, vals.mean(), color=OKABE_ITO[i % len(OKABE_ITO)], alpha=0.75)
            ax.plot(np.full(len(vals), i), vals, "o", color="black", markersize=3)
    if "warmstart_eval_accuracy" in df and len(df):
        warm = float(df["warmstart_eval_accuracy"].astype(float).mean())
        if math.isfinite(warm):
            ax.axhline(warm, color="grey", linestyle="--", linewidth=1, label="warm start")
            ax.legend(fontsize=8)
    ax.set_xticks(range(len(order)), [labels.get(v, v) if labels else v for v in order])
    ax.set_ylabel(metric.replace("_", " "))
    return ax
