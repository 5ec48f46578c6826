"""Seed statistics of one sweep cell: mean, 95% confidence interval; Welch's test vs a baseline (the
unpaired fallback of ``analysis.paired``).

Seeds are few (2-10), so the interval uses Student's t with n − 1 degrees of freedom rather
than the normal approximation, and the comparison of two cells is Welch's unequal-variance
t-test (the cells need not share a variance or a seed count).

The t distribution comes from ``scipy.special`` (``stdtrit``/``stdtr``, what ``scipy.stats.t``
calls underneath): importing ``scipy.stats`` alone costs ~0.8 s, half the budget of
``grpolab table`` on 1,000 runs. The tests check both against ``scipy.stats``
(``t.interval``, ``ttest_ind(equal_var=False)``).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

LEVEL = 0.95


def t_quantile(q: float, dof: float) -> float:
    """Quantile ``q`` of Student's t with ``dof`` degrees of freedom (= scipy.stats.t.ppf)."""
    return float(special.stdtrit(dof, q))


def mean_ci(values, level: float = LEVEL) -> tuple[float, float]:
    """(mean, half-width) of the ``level`` Student-t interval of the mean.

        half = t_{(1+level)/2, n−1} · s / √n,   s the sample std (ddof = 1)

    The half-width is NaN for n < 2 (no spread to estimate); the mean is NaN for n = 0.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan
    return mean, t_quantile((1 + level) / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)


def welch_p(a, b) -> float:
    """Two-sided p-value of Welch's t-test of mean(a) ≠ mean(b):

        t = (ā − b̄) / √(s_a²/n_a + s_b²/n_b),
        ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1))   (Welch–Satterthwaite),
        p = 2 · F_ν(−|t|)

    NaN if either sample has n < 2 or both are constant (no variance to test against).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(2 * special.stdtr(dof, -abs(t)))


def significance_mark(p: float) -> str:
    """``**`` for p < 0.01, ``*`` for p < 0.05, else empty (also for NaN)."""
    if not p == p:  # NaN
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""
