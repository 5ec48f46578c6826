"""Paired comparisons and multiplicity corrections, each against the library that computes the same
thing (scipy.stats, statsmodels) on the same inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.multiplicity import adjust, adjust_matrix
from analysis.paired import compare, hierarchical_bootstrap_ci, paired_t_p, sign_flip_p, welch_ci


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_paired_t_equals_scipy_ttest_rel(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0.5, 0.1, n), rng.normal(0.45, 0.1, n)
    assert paired_t_p(a - b) == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-10)


def test_paired_t_vectorised_rows_equal_one_by_one():
    d = np.random.default_rng(0).normal(0.01, 0.02, (50, 4))
    assert np.allclose(paired_t_p(d), [stats.ttest_1samp(r, 0).pvalue for r in d])


def test_paired_t_edge_cases():
    assert math.isnan(paired_t_p([0.0, 0.0, 0.0]))  # identical cells (the warm start): no test
    assert math.isnan(paired_t_p([0.3]))
    # two seeds that agree exactly: scipy says p = 0, but there is no spread to test against
    assert stats.ttest_1samp([0.1, 0.1], 0).pvalue == 0.0 and math.isnan(paired_t_p([0.1, 0.1]))
    assert paired_t_p([0.1, 0.1, 0.10001]) < 1e-4  # any spread at all: a test again


@pytest.mark.parametrize("n", [2, 4, 6, 9])
def test_sign_flip_equals_scipy_permutation_test(n):
    d = np.random.default_rng(n).normal(0.02, 0.03, n)
    ref = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                 alternative="two-sided").pvalue
    assert sign_flip_p(d) == pytest.approx(ref, abs=1e-12)


def test_sign_flip_hand_computed():
    # d = (1, 2, 3): |mean| = 2; of the 8 patterns only (+,+,+) and (−,−,−) reach |mean| ≥ 2
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    # ties count: (1, 1) — all four patterns give |mean| ∈ {1, 0, 0, 1}
    assert sign_flip_p([1.0, 1.0]) == pytest.approx(2 / 4)
    assert math.isnan(sign_flip_p([0.0, 0.0]))


def test_sign_flip_monte_carlo_beyond_the_exact_range():
    d = np.random.default_rng(1).normal(0.5, 1.0, 16)
    exact = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
    assert sign_flip_p(d) == pytest.approx(exact, abs=0.015)  # 9,999 patterns: MC SE ≈ 0.005


def test_seed_bootstrap_agrees_with_scipy_bootstrap():
    """One prompt column: the hierarchical bootstrap is the ordinary percentile bootstrap of the mean."""
    d = np.random.default_rng(2).normal(0.02, 0.05, 10)
    ref = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=20_000, confidence_level=0.95,
                          rng=np.random.default_rng(0)).confidence_interval
    lo, hi = hierarchical_bootstrap_ci(d, n_boot=20_000)
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=0.002)


def test_hierarchical_bootstrap_adds_the_prompt_stage():
    """Seeds × prompts: the interval is wider than the seed-only one by about the prompt-sampling
    variance (var of the mean = var_seed/S + var_prompt/(S·P)), and it contains Δ."""
    rng = np.random.default_rng(3)
    seeds, prompts = 8, 40
    d = rng.normal(0.0, 0.01, (seeds, 1)) + rng.normal(0.03, 0.2, (seeds, prompts))
    lo, hi = hierarchical_bootstrap_ci(d)
    slo, shi = hierarchical_bootstrap_ci(d.mean(1))
    assert lo < d.mean() < hi and (hi - lo) > (shi - slo)
    se = math.sqrt(d.mean(1).var(ddof=1) / seeds + (d - d.mean(1, keepdims=True)).var() / (seeds * prompts))
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_welch_ci_equals_scipy():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0.5, 0.1, 5), rng.normal(0.4, 0.05, 3)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert welch_ci(a, b) == pytest.approx((ref.low, ref.high), rel=1e-9)


@pytest.mark.parametrize("method,sm", [("holm", "holm"), ("bh", "fdr_bh")])
def test_corrections_equal_statsmodels(method, sm):
    p = np.random.default_rng(5).uniform(0, 0.2, 30) ** 2
    assert np.allclose(adjust(p, method), multipletests(p, method=sm)[1], rtol=0, atol=1e-15)
    rows = np.random.default_rng(6).uniform(0, 1, (20, 9))
    assert np.allclose(adjust_matrix(rows, method), [multipletests(r, method=sm)[1] for r in rows])


def test_corrections_skip_untested_comparisons():
    p = [0.01, math.nan, 0.04, 0.03]
    out = adjust(p, "holm")
    assert math.isnan(out[1])
    assert np.allclose(out[[0, 2, 3]], multipletests([0.01, 0.04, 0.03], method="holm")[1])
    assert np.array_equal(adjust(p, "none"), np.array(p), equal_nan=True)


def test_compare_pairs_by_seed_and_prompt_and_falls_back_to_welch():
    cell, base = {0: 0.6, 1: 0.7, 2: 0.8}, {0: 0.5, 1: 0.62, 2: 0.71}
    c = compare(cell, base)
    assert (c.test, c.pairing, c.n) == ("paired-t", "seed", 3)
    assert c.delta == pytest.approx(np.mean([0.1, 0.08, 0.09]))
    assert c.p == pytest.approx(stats.ttest_rel([0.6, 0.7, 0.8], [0.5, 0.62, 0.71]).pvalue)
    assert c.p_welch == pytest.approx(stats.ttest_ind([0.6, 0.7, 0.8], [0.5, 0.62, 0.71], equal_var=False).pvalue)
    # no shared seeds: Welch over all runs
    w = compare({0: 0.6, 1: 0.7}, {2: 0.5, 3: 0.62})
    assert (w.test, w.pairing) == ("welch", "none")
    assert w.p == pytest.approx(stats.ttest_ind([0.6, 0.7], [0.5, 0.62], equal_var=False).pvalue)
    # per-prompt outcomes: pairs on common prompt ids, in the cell's order
    ids = ["0:a", "1:b"]
    prompts_c = {0: (ids, [1.0, 0.5]), 1: (ids, [0.5, 0.5]), 2: (ids, [1.0, 1.0])}
    prompts_b = {0: (ids[::-1], [0.0, 0.5]), 1: (ids, [0.5, 0.0]), 2: (ids, [0.5, 1.0])}
    p = compare(cell, base, cell_prompts=prompts_c, base_prompts=prompts_b)
    assert (p.pairing, p.prompts) == ("seed×prompt", 2)
    # seed 0: base has b=0.0, a=0.5 → d = (1.0−0.5, 0.5−0.0); seed 1: (0, 0.5); seed 2: (0.5, 0)
    per_seed = [0.5, 0.25, 0.25]
    assert p.delta == pytest.approx(np.mean(per_seed))
    assert p.p == pytest.approx(stats.ttest_1samp(per_seed, 0).pvalue)
    s = compare(cell, base, test="sign-flip")
    assert s.p == pytest.approx(2 / 8)  # three positive differences: 2 of 8 patterns as extreme
