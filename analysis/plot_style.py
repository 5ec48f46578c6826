"""How a curve looks: colour, line style and marker per cell, the baseline cell drawn apart, and
the range a metric's band may span.

Colours are the Okabe–Ito palette (Okabe & Ito, 2008, "Color Universal Design"), distinguishable
under the common colour-vision deficiencies; each cell also gets its own line style and marker
(cycles of 7 colours, 4 styles, 6 markers: no two of the first 84 cells look alike), so curves
stay apart where their bands overlap and in greyscale print. The baseline cell is black, thicker
and drawn on top, and its legend entry says "(baseline)".
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# Okabe–Ito without black (the baseline's); yellow last: the weakest against white.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442"]
BASELINE_COLOR = "#000000"
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P"]
MAX_MARKERS = 10  # per curve: a marker every few points on long curves, staggered between cells

# Metrics bounded by construction: a band (mean ± t·s/√n) can leave the range the metric lives in.
UNIT_INTERVAL = re.compile(r"^(eval/accuracy|eval/pass@\w+|train/accuracy|train/reward_accuracy)$|_frac$")
NON_NEGATIVE = re.compile(r"(response_length|_abs_adv|_tokens)$|^time/")


@dataclass(frozen=True)
class CurveStyle:
    color: str
    linestyle: str
    marker: str
    linewidth: float
    zorder: float

    def plot_kwargs(self, n_points: int, index: int) -> dict:
        every = max(1, -(-n_points // MAX_MARKERS))
        return {"color": self.color, "linestyle": self.linestyle, "marker": self.marker, "lw": self.linewidth,
                "ms": 4.5 if self.color == BASELINE_COLOR else 4, "markevery": (index % every, every),
                "zorder": self.zorder}


def curve_style(index: int, baseline: bool = False) -> CurveStyle:
    """The ``index``-th non-baseline cell's style, or the baseline's."""
    if baseline:
        return CurveStyle(BASELINE_COLOR, "-", "o", 2.6, 3.0)
    return CurveStyle(OKABE_ITO[index % len(OKABE_ITO)], LINESTYLES[index % len(LINESTYLES)],
                      MARKERS[index % len(MARKERS)], 1.6, 2.0)


def metric_range(metric: str) -> tuple[float, float]:
    """(low, high) a metric's values can take: [0, 1] for accuracies, pass@k and fractions, [0, ∞)
    for lengths, counts and times, else unbounded."""
    if UNIT_INTERVAL.search(metric):
        return 0.0, 1.0
    if NON_NEGATIVE.search(metric):
        return 0.0, np.inf
    return -np.inf, np.inf


def clip_band(metric: str, lo, hi):
    """The band's edges clipped to the metric's range (a 95% CI of accuracies near 1 ends at 1)."""
    low, high = metric_range(metric)
    return np.clip(np.asarray(lo, dtype=float), low, high), np.clip(np.asarray(hi, dtype=float), low, high)
