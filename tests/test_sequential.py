"""The adaptive-seeding rule (``analysis.sequential``): Holm within a look at α / L, Bonferroni over the L
planned looks; its family-wise error rate on simulated null sweeps (``analysis.simulate``'s model), the
negative control (naive peeking at full α), and the table that applies it to an adaptive sweep's dir."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from analysis.sequential import (
    ADAPTIVE_FILE,
    AdaptiveDesign,
    adjusted_p,
    apply_rule,
    naive_rejections,
    read_design,
    sequential_rejections,
)
from analysis.sequential_sim import look_p, study
from analysis.simulate import Design, records, simulate
from analysis.summary import summarize
from analysis.synthetic import write_synthetic_sweep
from analysis.table import main as table_main

NAN = math.nan


def _bound(level: float, n: int) -> float:
    return level + 3 * math.sqrt(level * (1 - level) / n)


def test_the_design_plans_looks_at_the_declared_seeds_plus_k_per_round():
    d = AdaptiveDesign("final_eval_accuracy", [0, 1], max_seeds=7, step=2)
    assert d.looks == 4  # 2, 4, 6, 7 seeds
    assert [d.seeds_at(k) for k in (1, 2, 4)] == [[0, 1], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6]]
    assert AdaptiveDesign("m", [3, 5], 2, 2).looks == 1  # nothing to add: one look at the full α
    assert AdaptiveDesign("m", [3, 5], 4, 1).seeds_at(3) == [3, 5, 6, 7]  # seeds after the largest declared


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_one_look_is_holm(alpha):
    """With L = 1 the rule is Holm's step-down at α (statsmodels' multipletests, 'holm')."""
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.1, (40, 6)) ** rng.uniform(0.5, 2, (40, 1))
    got = sequential_rejections(p[:, None, :], looks=1, alpha=alpha) > 0
    expected = np.array([multipletests(row, alpha=alpha, method="holm")[0] for row in p])
    assert expected.any() and not expected.all()
    assert np.array_equal(got, expected)


def test_each_look_tests_at_alpha_over_l_and_a_declared_comparison_leaves_the_family():
    # m = 2, L = 2, α = 0.05: look 1 Holm at 0.025 (thresholds 0.0125, 0.025)
    p = [[0.01, 0.5], [NAN, 0.02]]  # look 2: the first declared, so the second alone at 0.025
    assert sequential_rejections(p, looks=2).tolist() == [1, 2]
    assert sequential_rejections([[0.01, 0.5], [NAN, 0.03]], looks=2).tolist() == [1, 0]
    # 0.02 < 0.025 is not enough at look 1: Holm's first threshold is 0.025 / 2
    assert sequential_rejections([[0.02, 0.5]], looks=2).tolist() == [0, 0]
    # a comparison that got no seeds at look 2 but is not declared still counts, with p = 1
    assert sequential_rejections([[0.5, 0.5], [NAN, 0.02]], looks=2).tolist() == [0, 0]
    assert sequential_rejections([[0.5, 0.5], [NAN, 0.012]], looks=2).tolist() == [0, 2]
    # once declared, stays declared (a later, larger p does not undo it)
    assert sequential_rejections([[0.001, 0.5], [0.9, 0.5]], looks=2).tolist() == [1, 0]
    # naive peeking: Holm at the full α at each look
    assert naive_rejections([[0.04, 0.5], [0.02, 0.5]]).tolist() == [2, 0]


def test_adjusted_p_is_the_smallest_alpha_that_declares():
    rng = np.random.default_rng(5)
    for _ in range(60):
        p = rng.uniform(0, 0.05, (3, 5)) ** rng.uniform(0.4, 1.5)
        p[rng.uniform(size=p.shape) < 0.15] = np.nan
        adj = adjusted_p(p, looks=4)
        for alpha in (0.05, 0.01, 0.2):
            assert np.array_equal(adj < alpha, sequential_rejections(p, 4, alpha) > 0), (p, alpha)


# ---------------------------------------------------------------- the acceptance: null rate held
TABLES = 2000
ADAPTIVE = AdaptiveDesign("final_eval_accuracy", [0, 1], max_seeds=10, step=2)  # looks at 2, 4, 6, 8, 10 seeds


@pytest.fixture(scope="module")
def null_study():
    return study(ADAPTIVE, TABLES, cells=10)


def test_adaptive_seeding_keeps_the_null_rate_at_its_stated_level(null_study):
    """10 cells with equal true means, seed and prompt noise: a table whose unresolved cells get 2 more
    seeds a round, up to 10, marks some difference in at most 5% of tables (+ 3 Monte-Carlo SE)."""
    rate, _ = null_study["fwer/rule"]
    assert rate <= _bound(0.05, TABLES), rate


def test_naive_peeking_at_full_alpha_exceeds_it(null_study):
    """The negative control: testing each of the 5 looks at the full α marks a null difference too often."""
    rate, _ = null_study["fwer/naive"]
    assert rate > _bound(0.05, TABLES), rate


def test_the_table_code_applies_the_rule_the_simulation_applies():
    """``apply_rule`` (what ``grpolab table`` runs on an adaptive sweep) marks what the vectorised rule
    marks, on tables with true effects so that comparisons are declared at different looks."""
    design = AdaptiveDesign("final_eval_accuracy", [0, 1, 2], max_seeds=7, step=2, baseline={"cell": 0},
                            looks_done=[{"look": k} for k in (1, 2, 3)])
    effects = np.array([0, 0, 0.6, 0.6, 1.2, 1.2])
    acc = simulate(Design(cells=6, seeds=7), 25, effects, rng=np.random.default_rng(8))
    expected = sequential_rejections(look_p(acc, design), design.looks)
    assert len(set(expected.ravel())) >= 3  # never, at some look, at another
    for t, table in enumerate(acc):
        df, prompts = records(table)
        summary = summarize(df, ["final_eval_accuracy"], ["cell"], prompts=prompts, n_boot=0)
        ruled = apply_rule(summary, df, design, "auto", prompts)
        marked = (ruled["final_eval_accuracy/p_adj"].iloc[1:] < 0.05).to_numpy()
        assert np.array_equal(marked, expected[t] > 0), t
        assert "adaptive-seeding rule" in ruled.attrs["sequential"]


# ---------------------------------------------------------------- the table of an adaptive sweep dir
def _adaptive_sweep(tmp_path):
    root = write_synthetic_sweep(tmp_path / "sw", axes={"variant": ["grpo", "ar", "lopti"]}, seeds=range(4),
                                 steps=4, eval_every=2)
    design = AdaptiveDesign("final_eval_accuracy", [0, 1], 4, 2, baseline={"variant": "grpo"},
                            looks_done=[{"look": 1}, {"look": 2}])
    (root / ADAPTIVE_FILE).write_text(json.dumps(design.to_json()))
    return root


def test_grpolab_table_states_the_rule_and_tests_other_metrics_at_alpha_over_l(tmp_path, capsys):
    root = _adaptive_sweep(tmp_path)
    assert read_design(root).looks == 2
    assert table_main([str(root), "--format", "csv", "--metrics", "final_eval_accuracy,final_reward"]) == 0
    import io

    import pandas as pd

    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    other = csv[(csv.metric == "final_reward") & csv.p.notna()]
    holm = multipletests(other.p, method="holm")[1]
    assert np.allclose(other.p_adj, np.minimum(1, 2 * holm))
    assert table_main([str(root), "--metrics", "final_eval_accuracy,final_reward"]) == 0
    md = capsys.readouterr().out
    assert "adaptive-seeding rule" in md and "2 of at most 2 looks, at 2, 4 seeds" in md and "α/2" in md
    assert "over the 4 comparisons of this table" not in md  # the plain Holm caption is replaced
    assert table_main([str(root), "--correction", "none"]) == 0
    assert "seeds were added in rounds" in capsys.readouterr().out


def test_a_table_without_adaptive_json_is_unchanged(tmp_path, capsys):
    root = _adaptive_sweep(tmp_path)
    assert table_main([str(root)]) == 0
    with_rule = capsys.readouterr().out
    (root / ADAPTIVE_FILE).unlink()
    assert table_main([str(root)]) == 0
    plain = capsys.readouterr().out
    assert "adaptive" not in plain and "Holm's step-down correction" in plain and plain != with_rule


def test_a_pooled_layout_is_called_exploratory_and_another_baseline_is_not(tmp_path, capsys):
    root = write_synthetic_sweep(tmp_path / "sw", axes={"variant": ["grpo", "ar"], "algorithm.kl.coef": [0.0, 0.1]},
                                 seeds=range(4), steps=4, eval_every=2)
    design = AdaptiveDesign("final_eval_accuracy", [0, 1], 4, 2, baseline={"variant": "grpo", "algorithm.kl.coef": 0.0},
                            looks_done=[{"look": 1}, {"look": 2}])
    (root / ADAPTIVE_FILE).write_text(json.dumps(design.to_json()))
    assert table_main([str(root), "--rows", "variant"]) == 0
    assert "not the sweep's own" in (out := capsys.readouterr().out) and "exploratory" in out
    assert table_main([str(root), "--baseline", "variant=ar"]) == 0
    assert "not the sweep's own" in (out := capsys.readouterr().out) and "exploratory" not in out
    assert table_main([str(root)]) == 0
    assert "decided the rounds" in capsys.readouterr().out
