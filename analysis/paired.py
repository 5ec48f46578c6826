"""Paired comparisons of a sweep cell with its baseline: Δ within seed (and within prompt), its
hierarchical bootstrap interval, and small-n tests.

Runs of one seed share the warm start and the training prompt order, and every cell evaluates the
same prompts in the same order (docs/run-record.md), so cell and baseline pair by seed and, where the
runs logged per-prompt outcomes (``evals.jsonl``), by prompt too. The unit of the test is the seed:
training randomness, not eval sampling, is what a second seed replicates (Miller, 2024, "Adding
error bars to evals", arXiv:2411.00640, on clustered, paired differences; Colas et al., 2018, "How
many random seeds?", arXiv:1806.08295, on small n).

    d[s, q] = acc_cell[s, q] − acc_base[s, q]      seed s, prompt q (a run-level metric: q is one column)
    Δ       = mean_s mean_q d[s, q]
    d_s     = mean_q d[s, q]                         what the tests see: one difference per seed
    paired t:   t = mean(d_s) / (sd(d_s) / √n),  p = 2 F_{n−1}(−|t|)           (= scipy.stats.ttest_rel)
    sign flip:  p = P(|mean(ε·d_s)| ≥ |mean(d_s)|), ε uniform on {−1, 1}^n, all 2^n patterns for
                n ≤ EXACT_MAX (= scipy.stats.permutation_test, permutation_type="samples")
    CI:         percentile interval of Δ over B resamples: seeds with replacement, then, for each
                drawn seed, its prompts with replacement (hierarchical bootstrap)

Everything is vectorised over leading axes, so the simulation study in the tests can run thousands of
tables at once; the tests check each function against scipy on the same inputs.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from analysis.stats import LEVEL, t_quantile, welch_p

EXACT_MAX = 12  # sign-flip test: every pattern up to 2^12 = 4,096; Monte Carlo beyond
N_SIGN_FLIPS = 9_999  # Monte Carlo sign patterns for n > EXACT_MAX
N_BOOT = 2_000  # hierarchical bootstrap resamples
BOOT_SEED = 20_240_601  # fixed: a table is a function of its records
TESTS = ("auto", "paired-t", "sign-flip", "welch")


def paired_t_p(d) -> np.ndarray:
    """Two-sided paired-t p-value of mean ≠ 0 over the last axis of ``d`` (the per-seed differences).
    NaN for n < 2 or when the differences do not vary: with no spread there is no noise to test
    against (scipy gives p = 0 when they are equal and non-zero; two seeds that happen to agree would
    then be a finding), as ``welch_p`` is NaN for constant samples."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    if n < 2:
        return np.full(d.shape[:-1], math.nan)[()]
    mean, sd = d.mean(-1), d.std(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / math.sqrt(n))
    p = 2 * special.stdtr(n - 1, -np.abs(t))
    return np.where(sd == 0, math.nan, p)[()]


def _signs(n: int, rng) -> np.ndarray:
    if n <= EXACT_MAX:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    return rng.choice((1.0, -1.0), size=(N_SIGN_FLIPS, n))


def sign_flip_p(d, rng=None) -> np.ndarray:
    """Two-sided sign-flip (paired permutation) p-value of mean ≠ 0 over the last axis of ``d``: the
    share of sign patterns whose |mean| is at least the observed one; exact (every pattern, the
    identity included) for n ≤ ``EXACT_MAX``, else (1 + hits) / (1 + N_SIGN_FLIPS) over random ones.
    NaN for n = 0 or all differences 0. Its smallest value is 2 / 2^n: n ≤ 5 seeds never reach 0.05."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    if n == 0:
        return np.full(d.shape[:-1], math.nan)[()]
    signs = _signs(n, rng if rng is not None else np.random.default_rng(BOOT_SEED))
    observed = np.abs(d.mean(-1))
    null = np.abs(d @ signs.T / n)  # [..., patterns]
    hits = (null >= observed[..., None] * (1 - 1e-12) - 1e-15).sum(-1)
    p = hits / len(signs) if n <= EXACT_MAX else (1 + hits) / (1 + len(signs))
    return np.where(np.all(d == 0, axis=-1), math.nan, p)[()]


def hierarchical_bootstrap_ci(d, level: float = LEVEL, n_boot: int = N_BOOT, rng=None) -> tuple[float, float]:
    """Percentile ``level`` interval of mean_s mean_q d[s, q] (``d``: seeds × prompts; one column for a
    run-level metric) over ``n_boot`` resamples of seeds, then of prompts within each drawn seed.
    (NaN, NaN) for fewer than 2 seeds."""
    d = np.asarray(d, dtype=float)
    if d.ndim == 1:
        d = d[:, None]
    n_seeds, n_prompts = d.shape
    if n_seeds < 2 or n_boot < 1:
        return math.nan, math.nan
    rng = rng if rng is not None else np.random.default_rng(BOOT_SEED)
    stats = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (n_seeds * n_prompts))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        seeds = rng.integers(0, n_seeds, (b, n_seeds))
        if n_prompts == 1:
            stats[start:start + b] = d[seeds, 0].mean(-1)
        else:
            prompts = rng.integers(0, n_prompts, (b, n_seeds, n_prompts))
            stats[start:start + b] = d[seeds[..., None], prompts].mean(axis=(1, 2))
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def welch_ci(a, b, level: float = LEVEL) -> tuple[float, float]:
    """The Welch (unequal-variance) t interval of mean(a) − mean(b); NaN when either n < 2."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        delta = float(a.mean() - b.mean())
        return delta, delta
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile((1 + level) / 2, dof) * se
    delta = float(a.mean() - b.mean())
    return delta - half, delta + half


@dataclass
class Comparison:
    """A cell against the baseline on one metric. ``test``: ``paired-t``, ``sign-flip`` or ``welch``;
    ``pairing``: ``seed×prompt``, ``seed`` or ``none`` (Welch); ``n``: pairs of seeds (or runs of the
    cell, Welch); ``prompts``: prompts per seed paired (0 without per-prompt outcomes); ``sd``: the sample
    SD (ddof = 1) of the per-seed differences the paired test saw (NaN for Welch or n < 2)."""

    delta: float
    lo: float
    hi: float
    p: float
    test: str
    pairing: str
    n: int
    prompts: int = 0
    p_welch: float = math.nan
    sd: float = math.nan


def compare(cell: dict, base: dict, test: str = "auto", level: float = LEVEL, n_boot: int = N_BOOT,
            cell_prompts: dict | None = None, base_prompts: dict | None = None) -> Comparison:
    """Compare one metric of a cell with the baseline. ``cell`` / ``base``: {seed: run value};
    ``*_prompts``: {seed: (prompt ids, per-prompt values)} where the runs logged them.

    ``auto`` pairs when the cells share at least 2 seeds (the paired t over the shared seeds; Δ and
    its interval within seed and, where both runs of a seed have per-prompt outcomes on common
    prompts, within prompt), else falls back to Welch over all runs; ``welch`` never pairs."""
    a, b = np.array(list(cell.values()), dtype=float), np.array(list(base.values()), dtype=float)
    p_welch = welch_p(a, b)
    shared = [s for s in cell if s in base]
    if test == "welch" or (len(shared) < 2 and test == "auto") or len(shared) < 1:
        lo, hi = welch_ci(a, b, level)
        delta = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
        return Comparison(delta, lo, hi, p_welch, "welch", "none", len(a), 0, p_welch)
    d, prompts = _paired_differences(shared, cell, base, cell_prompts or {}, base_prompts or {})
    per_seed = d.mean(-1)
    name = "paired-t" if test in ("auto", "paired-t") else "sign-flip"
    p = paired_t_p(per_seed) if name == "paired-t" else sign_flip_p(per_seed)
    lo, hi = hierarchical_bootstrap_ci(d, level, n_boot)
    sd = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else math.nan
    return Comparison(float(per_seed.mean()), lo, hi, float(p), name, "seed×prompt" if prompts else "seed",
                      len(shared), prompts, p_welch, sd)


def _paired_differences(shared, cell, base, cell_prompts, base_prompts) -> tuple[np.ndarray, int]:
    """seeds × prompts differences on the prompts every shared seed's two runs logged (ids equal), or
    seeds × 1 run-level differences when some pair lacks per-prompt outcomes or they share no prompt."""
    if all(s in cell_prompts and s in base_prompts for s in shared):
        common = None
        for s in shared:
            ids = set(cell_prompts[s][0]) & set(base_prompts[s][0])
            common = ids if common is None else common & ids
        if common:
            order = [i for i in cell_prompts[shared[0]][0] if i in common]
            rows = []
            for s in shared:
                (ci, cv), (bi, bv) = cell_prompts[s], base_prompts[s]
                c, b = dict(zip(ci, cv)), dict(zip(bi, bv))
                rows.append([c[i] - b[i] for i in order])
            return np.array(rows, dtype=float), len(order)
    return np.array([[cell[s] - base[s]] for s in shared], dtype=float), 0
