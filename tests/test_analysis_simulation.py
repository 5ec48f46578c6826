"""The table's error rates on simulated sweeps with a known truth (``analysis.simulate``): 10 cells,
equal true means, seed noise shared by the cells of a seed, prompt difficulty and binomial eval noise.

Cheaper path (the hierarchical bootstrap does not decide a star): the family-wise rate is measured over
2,000 tables by the vectorised pipeline (paired t per comparison, Holm per table); 150 of those tables
also go through the table's own code (``summarize`` → ``layout_table`` → Markdown), which must mark
exactly the same comparisons; the bootstrap interval's coverage is measured on its own, on 300 null
comparisons.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from analysis.simulate import Design, coverage, records, rejections, simulate
from analysis.table import layout_table, markdown_table, summarize

DESIGN = Design()  # 10 cells × 5 seeds × 32 prompts, eval_n 4
TABLES = 2000


@pytest.fixture(scope="module")
def null_tables():
    return simulate(DESIGN, TABLES, rng=np.random.default_rng(11))


def _bound(rate_level: float, n: int) -> float:
    return rate_level + 3 * math.sqrt(rate_level * (1 - rate_level) / n)


@pytest.mark.parametrize("test", ["paired-t", "sign-flip", "welch"])
def test_family_wise_error_under_the_null_is_at_most_5_percent(null_tables, test):
    fwer = rejections(null_tables, test, "holm").any(-1).mean()
    assert fwer <= _bound(0.05, TABLES), fwer


def test_without_correction_a_ten_cell_table_marks_too_often(null_tables):
    """The negative control: nine uncorrected paired tests per table mark something far above 5%."""
    assert rejections(null_tables, "paired-t", "none").any(-1).mean() > 0.15


def test_the_table_code_marks_what_the_vectorised_pipeline_marks(null_tables):
    acc = null_tables[:150]
    expected = rejections(acc, "paired-t", "holm")
    for t, table in enumerate(acc):
        df, prompts = records(table)
        summary = summarize(df, ["final_eval_accuracy"], ["cell"], prompts=prompts, n_boot=20)
        assert set(summary["final_eval_accuracy/pairing"].iloc[1:]) == {"seed×prompt"}
        marked = (summary["final_eval_accuracy/p_adj"].iloc[1:] < 0.05).to_numpy()
        assert np.array_equal(marked, expected[t]), t
        if expected[t].any() or t < 3:
            md = markdown_table(summary, ["final_eval_accuracy"], ["cell"])
            assert sum(bool(re.search(r"\\\*\)", line)) for line in md.splitlines()[2:12]) == expected[t].sum()
            layout_table(summary, ["final_eval_accuracy"], ["cell"])


def test_paired_analysis_is_at_least_as_powerful_as_unpaired():
    effects = np.zeros(DESIGN.cells)
    effects[1:4] = 0.5  # logits: about +0.1 accuracy
    alt = simulate(DESIGN, 1000, effects, rng=np.random.default_rng(12))
    paired = rejections(alt, "paired-t", "holm")[:, :3].mean()
    welch = rejections(alt, "welch", "holm")[:, :3].mean()
    assert paired >= welch and paired > 0.2, (paired, welch)  # measured: 0.285 vs 0.108
    assert rejections(alt, "paired-t", "holm")[:, 3:].any(-1).mean() <= _bound(0.05, 1000)  # the null cells


def test_hierarchical_bootstrap_interval_covers_at_ten_seeds():
    assert coverage(Design(seeds=10), 300, n_boot=400, rng=np.random.default_rng(13)) >= 0.90
