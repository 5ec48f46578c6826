"""Performance profiles across tasks (Agarwal et al., 2021, arXiv:2108.13264, §4.1): per cell, the
fraction of its runs (all tasks pooled) scoring above a threshold τ, over τ, with the pointwise
stratified bootstrap interval of that fraction as a band (``analysis.aggregate_stats``).

Colours are the Okabe-Ito palette (distinguishable under the common colour-vision deficiencies);
past eight cells the line style changes as well. PNG, PDF and SVG of one fixed-size figure.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from analysis import render
from analysis.aggregate import TaskScores
from analysis.aggregate_stats import LEVEL, REPS, interval, score_distribution

# Okabe & Ito, "Color Universal Design" (2008): black first, then the seven hues
OKABE_ITO = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"]
STYLES = ["-", "--", ":", "-."]
FIGSIZE, DPI = (9.0, 5.0), 100  # 900 × 500 px, as the learning curves
N_TAUS = 101
SUFFIXES = (".png", ".pdf", ".svg")


def thresholds(scores: TaskScores, n: int = N_TAUS) -> np.ndarray:
    """``n`` thresholds from just below the lowest score of any run to its highest, so every
    profile starts at 1 and ends at 0."""
    pooled = np.concatenate([p for parts in scores.cells.values() for p in parts])
    lo, hi = float(pooled.min()), float(pooled.max())
    pad = 0.02 * (hi - lo or 1.0)
    return np.linspace(lo - pad, hi, n)


def profiles(scores: TaskScores, taus, reps: int = REPS, level: float = LEVEL) -> dict:
    """{cell: (fraction above τ, lower, upper)} for the cells with a run on every task."""
    return {cell: interval(lambda s: score_distribution(s, taus), parts, reps=reps, level=level)
            for cell, parts in scores.cells.items() if all(len(p) for p in parts)}


def _label(keys, cell, runs) -> str:
    kv = ", ".join(f"{k.split('.')[-1]}={render.fmt_key(v, 3)}" for k, v in zip(keys, cell)) or "all runs"
    return f"{kv} ({runs} runs)"


def profile_figure(scores: TaskScores, reps: int = REPS, level: float = LEVEL):
    """One axes: each aggregated cell's performance profile with its band."""
    taus = thresholds(scores)
    fig = plt.figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.add_axes([0.08, 0.12, 0.6, 0.78])
    for i, (cell, (frac, lo, hi)) in enumerate(profiles(scores, taus, reps, level).items()):
        color, style = OKABE_ITO[i % len(OKABE_ITO)], STYLES[(i // len(OKABE_ITO)) % len(STYLES)]
        runs = sum(len(p) for p in scores.cells[cell])
        ax.plot(taus, frac, color=color, ls=style, lw=1.8, drawstyle="steps-post",
                label=_label(scores.keys, cell, runs))
        ax.fill_between(taus, lo, hi, color=color, alpha=0.18, lw=0, step="post")
    tasks = ", ".join(render.fmt_key(t, 3) for t in scores.tasks)
    ax.set_xlabel(f"threshold τ on {scores.metric}")
    ax.set_ylabel(f"fraction of runs with {scores.metric} > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Performance profile across {scores.over} = {tasks}", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small", frameon=False,
              title=f"band: {round(100 * level)}% stratified bootstrap CI", title_fontsize="small")
    return fig


def write_profile(scores: TaskScores, out_dir, reps: int = REPS, level: float = LEVEL) -> list[Path]:
    """``out_dir/performance_profile_<metric>.{png,pdf,svg}``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "performance_profile_" + "".join(c if c.isalnum() else "_" for c in scores.metric).strip("_")
    fig = profile_figure(scores, reps, level)
    paths = [out / f"{stem}{suffix}" for suffix in SUFFIXES]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths
