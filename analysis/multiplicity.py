"""Multiple-comparison corrections across every comparison of one table.

A table of k cells × m metrics makes (k − 1)·m comparisons with the baseline; at 5% each, a table of
ten cells marks some difference most of the time even when nothing differs. The default controls the
family-wise error rate over the table (Holm, 1979, "A simple sequentially rejective multiple test
procedure"); ``bh`` controls the false discovery rate instead (Benjamini & Hochberg, 1995).

    Holm:  p_(1) ≤ … ≤ p_(m):  p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j))
    BH:                        p̃_(i) = min_{j ≥ i} min(1, m p_(j) / j)

Hand-written (vectorised over leading axes, for the simulation study; the table path avoids importing
statsmodels); ``tests/test_analysis_paired.py`` checks both against
``statsmodels.stats.multitest.multipletests`` (``holm``, ``fdr_bh``).
"""
from __future__ import annotations

import numpy as np

CORRECTIONS = ("holm", "bh", "none")
DESCRIPTION = {"holm": "Holm's step-down correction (family-wise error rate)",
               "bh": "Benjamini–Hochberg's correction (false discovery rate)",
               "none": "no multiplicity correction"}


def adjust_matrix(p, method: str = "holm") -> np.ndarray:
    """Adjusted p-values of each family on the last axis of ``p`` (no NaN)."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; valid: {', '.join(CORRECTIONS)}")
    p = np.asarray(p, dtype=float)
    m = p.shape[-1]
    if method == "none" or m == 0:
        return p.copy()
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, -1)
    i = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - i + 1) * ranked), axis=-1)
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, m * ranked / i)[..., ::-1], axis=-1)[..., ::-1]
    out = np.empty_like(adj)
    np.put_along_axis(out, order, adj, -1)
    return out


def adjust(p, method: str = "holm") -> np.ndarray:
    """Adjusted p-values of one family; NaN entries (no test) stay NaN and do not count in it."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    out[ok] = adjust_matrix(p[ok], method)
    return out
