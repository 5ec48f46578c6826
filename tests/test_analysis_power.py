"""The power planner (``analysis.power``, ``grpolab power``): its predicted power against the simulated
rejection rate of the table's own pipeline (``analysis.simulate``, a known truth), its MDE and seeds
against statsmodels and the normal approximation, the sweep's comparisons end to end, bad input."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.power import TTestIndPower, TTestPower

from analysis.paired import sign_flip_p
from analysis.power import (
    NEEDS_SEEDS,
    NO_SPREAD,
    plan_paired,
    plan_table,
    plan_unpaired,
    planning_alpha,
    sd_interval,
    sign_flip_min_seeds,
    t_power,
    two_sample_power,
)
from analysis.power_check import predicted_power, simulated_power, true_difference
from analysis.simulate import Design, records, simulate
from analysis.summary import summarize
from analysis.synthetic import write_synthetic_sweep
from tests.cli_helpers import grpolab

EFFECT = 0.5  # logits in cell 1 only: about +0.1 accuracy
TABLES = 2000


@pytest.fixture(scope="module")
def truth():
    """The true Δ and SD of the per-seed paired differences under ``Design()`` (5,000 two-cell tables)."""
    return true_difference(EFFECT)


# measured (python -m analysis.power_check): see docs/analysis.md, "Power and seeds"
@pytest.mark.parametrize("cells,seeds", [(10, 4), (10, 6), (10, 8), (2, 3), (2, 5)])
def test_predicted_power_is_within_5_points_of_the_simulated_power(truth, cells, seeds):
    """The acceptance check: the planner, given the true SD, predicts the power the real pipeline
    (paired t per comparison, Holm over the table's cells − 1 comparisons) has over 2,000 simulated
    tables, within ±5 points."""
    predicted = predicted_power(*truth, cells, seeds)
    simulated = simulated_power(EFFECT, cells, seeds, TABLES)
    assert abs(predicted - simulated) <= 0.05, (predicted, simulated)


def test_ignoring_the_correction_would_miss_the_simulated_power(truth):
    """The negative control: planned at the uncorrected α, the 9-comparison table's power is off by far
    more than 5 points, so the check above can fail."""
    uncorrected = predicted_power(*truth, 10, 6, correction="none")
    assert uncorrected - simulated_power(EFFECT, 10, 6, TABLES) > 0.2


# ---------------------------------------------------------------- the formulas
@pytest.mark.parametrize("sd,n,alpha,power", [(0.05, 5, 0.05 / 9, 0.8), (0.02, 3, 0.05, 0.9), (1.0, 12, 0.01, 0.5)])
def test_paired_mde_and_seeds_are_statsmodels_solve_power(sd, n, alpha, power):
    solver = TTestPower()
    plan = plan_paired(sd, n, 0.03, alpha, power)
    assert plan.mde == pytest.approx(sd * solver.solve_power(effect_size=None, nobs=n, alpha=alpha, power=power))
    assert plan.power == pytest.approx(solver.power(effect_size=0.03 / sd, nobs=n, alpha=alpha))
    exact = solver.solve_power(effect_size=0.03 / sd, nobs=None, alpha=alpha, power=power)
    assert plan.seeds == max(2, math.ceil(exact))
    assert solver.power(effect_size=0.03 / sd, nobs=plan.seeds, alpha=alpha) >= power
    if plan.seeds > 2:
        assert solver.power(effect_size=0.03 / sd, nobs=plan.seeds - 1, alpha=alpha) < power


def test_t_power_is_statsmodels_power_where_that_is_finite():
    paired, ind, checked = TTestPower(), TTestIndPower(), 0
    for n in (2, 3, 5, 10):
        for alpha in (0.05, 0.005):
            for es in (0.1, 0.8, 2.0, 4.0):
                expected = paired.power(es, n, alpha), ind.power(es, n, alpha, ratio=(n + 1) / n)
                got = t_power(es, n, alpha, n - 1), two_sample_power(es, n, n + 1, alpha)
                assert all(g == pytest.approx(e) for g, e in zip(got, expected) if math.isfinite(e)), (n, alpha, es)
                checked += sum(map(math.isfinite, expected))
    assert checked >= 56  # of 64: statsmodels is NaN at a few large effects with 2-3 seeds


def test_t_power_where_statsmodels_is_nan_matches_a_simulated_t_test():
    """statsmodels' power is NaN here (scipy's noncentral t lower tail); the fallback's power is what a
    Monte-Carlo paired t-test rejects (200,000 draws of 2 normal differences at effect 5.84)."""
    n, alpha, es = 2, 0.05, 5.84
    assert math.isnan(TTestPower().power(es, n, alpha))
    d = np.random.default_rng(5).normal(es, 1.0, (200_000, n))
    t = d.mean(-1) / (d.std(-1, ddof=1) / math.sqrt(n))
    simulated = (np.abs(t) > stats.t.ppf(1 - alpha / 2, n - 1)).mean()  # SE 0.0011
    assert t_power(es, n, alpha, n - 1) == pytest.approx(simulated, abs=0.005)


def test_mde_has_the_target_power_even_where_statsmodels_solve_power_errs():
    """At 3 seeds and α = 0.0005 statsmodels' solve_power returns effect 5.5, whose power is 0.045."""
    plan = plan_paired(1.0, 3, None, 0.0005, 0.8)
    assert t_power(plan.mde, 3, 0.0005, 2) == pytest.approx(0.8, abs=1e-6)
    assert plan.mde > plan_paired(1.0, 3, None, 0.005, 0.8).mde > plan_paired(1.0, 3, None, 0.05, 0.8).mde


def test_paired_figures_approach_the_normal_approximation_at_large_n():
    """Hand-computed: MDE ≈ (z_{1−α/2} + z_{power}) σ / √n; seeds ≈ ((z_{1−α/2} + z_{power}) σ / Δ)², the t
    adding about z²/2 seeds."""
    sd, alpha, power = 0.04, 0.05 / 6, 0.8
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)  # 2.638 + 0.842 = 3.480
    assert plan_paired(sd, 400, None, alpha, power).mde == pytest.approx(z * sd / 20, rel=0.01)
    n_normal = (z * sd / 0.01) ** 2  # 193.8
    t_extra = stats.norm.ppf(1 - alpha / 2) ** 2 / 2  # 3.5
    assert n_normal <= plan_paired(sd, 5, 0.01, alpha, power).seeds <= n_normal + t_extra + 1
    assert plan_paired(sd, 5, None, alpha, power).mde > z * sd / math.sqrt(5) * 1.3  # t with 4 dof: much wider


def test_unpaired_mde_and_seeds_are_statsmodels_two_sample_power():
    solver = TTestIndPower()
    sd_p = math.sqrt((4 * 0.05 ** 2 + 3 * 0.03 ** 2) / 7)  # pooled, hand-computed
    plan = plan_unpaired(0.05, 5, 0.03, 4, 0.04, 0.05, 0.8)
    assert plan.mde == pytest.approx(sd_p * solver.solve_power(effect_size=None, nobs1=5, alpha=0.05, power=0.8,
                                                               ratio=0.8))
    assert plan.power == pytest.approx(solver.power(effect_size=0.04 / sd_p, nobs1=5, alpha=0.05, ratio=0.8))
    es = 0.04 / math.sqrt((0.05 ** 2 + 0.03 ** 2) / 2)
    assert plan.seeds == math.ceil(solver.solve_power(effect_size=es, nobs1=None, alpha=0.05, power=0.8))
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert plan_unpaired(0.05, 300, 0.05, 300, None, 0.05).mde == pytest.approx(z * 0.05 * math.sqrt(2 / 300),
                                                                                rel=0.01)


@pytest.mark.parametrize("alpha", [0.05, 0.05 / 9, 0.01])
def test_sign_flip_floor_is_where_its_smallest_p_passes_alpha(alpha):
    n = sign_flip_min_seeds(alpha)
    assert sign_flip_p(np.ones(n)) < alpha <= sign_flip_p(np.ones(n - 1))  # all-positive: the smallest p
    plan = plan_paired(0.02, n - 1, 0.5, alpha, min_seeds=n)
    assert plan.power == 0 and plan.mde == math.inf and plan.seeds == n  # a huge Δ still needs n seeds


def test_planning_alpha_is_bonferroni_for_holm_and_bh_and_alpha_without_correction():
    assert planning_alpha(0.05, 12, "holm") == planning_alpha(0.05, 12, "bh") == 0.05 / 12
    assert planning_alpha(0.05, 12, "none") == planning_alpha(0.05, 1, "holm") == 0.05


def test_sd_interval_is_the_chi_square_interval():
    lo, hi = sd_interval(5)
    assert (lo, hi) == pytest.approx((math.sqrt(4 / 11.1433), math.sqrt(4 / 0.4844)), rel=1e-3)  # χ²₄ table


def test_missing_spread_says_what_is_missing():
    assert plan_paired(math.nan, 1, 0.02, 0.05).missing == NEEDS_SEEDS
    assert plan_paired(0.0, 5, 0.02, 0.05).missing == NO_SPREAD
    one = plan_paired(0.03, 1, 0.02, 0.05)  # a pilot SD plans seeds, but one seed has no test
    assert math.isnan(one.mde) and one.seeds is not None and "fewer than 2" in one.note
    assert plan_unpaired(0.03, 1, math.nan, 1, 0.02, 0.05).missing.startswith(NEEDS_SEEDS)


# ---------------------------------------------------------------- a table's comparisons
def test_plan_table_plans_each_comparison_from_its_per_seed_differences():
    acc = simulate(Design(cells=4, seeds=5), 1, [0, 0.5, 0, 0], rng=np.random.default_rng(3))[0]
    df, prompts = records(acc)
    summary = summarize(df, ["final_eval_accuracy"], ["cell"], prompts=prompts, n_boot=10)
    planned = plan_table(summary, {None: 0.05}, 0.8, 0.05)
    run = acc.mean(-1)  # [cells, seeds]
    assert planned.comparisons == 3 and planned.alpha_planning == pytest.approx(0.05 / 3)
    for k, row in enumerate(planned.rows, start=1):
        d = run[k] - run[0]
        assert row.cell == {"cell": k} and row.n == 5 and row.pairing == "seed×prompt"
        assert row.sd == pytest.approx(d.std(ddof=1)) and row.delta_observed == pytest.approx(d.mean())
        assert row.plan.power == pytest.approx(plan_paired(d.std(ddof=1), 5, 0.05, 0.05 / 3).power)


def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return write_synthetic_sweep(tmp_path_factory.mktemp("power") / "kl", axes={"algorithm.kl.coef": [0.0, 0.01, 0.05]},
                                 seeds=range(5), steps=4, eval_every=2, sweep_id="kl")


def test_cli_end_to_end_on_a_synthetic_sweep(sweep, capsys):
    metrics = "final_eval_accuracy,final_reward"
    rc, out, err = grpolab(capsys, "power", str(sweep), "--metrics", metrics, "--delta", "0.02", "--format", "csv")
    assert rc == 0, err
    plan = _csv(out)
    assert len(plan) == 4 and set(plan["test"]) == {"paired-t"} and (plan["comparisons"] == 4).all()
    rc, out, _ = grpolab(capsys, "table", str(sweep), "--metrics", metrics, "--format", "csv")
    table = _csv(out)
    runs = {(r.cell_id, r.seed): r for r in _runs(sweep)}
    for _, row in plan.iterrows():
        base = [runs[k] for k in sorted(runs) if runs[k].kl == 0.0]
        cell = [runs[k] for k in sorted(runs) if runs[k].kl == row["algorithm.kl.coef"]]
        d = np.array([getattr(c, row.metric) - getattr(b, row.metric) for c, b in zip(cell, base)])
        assert row.sd == pytest.approx(d.std(ddof=1)) and row.n == 5
        same = table[(table.metric == row.metric) & (table["algorithm.kl.coef"] == row["algorithm.kl.coef"])]
        assert row.delta_observed == pytest.approx(float(same.delta.iloc[0]))  # the table's Δ
        solver = TTestPower()
        assert row.mde == pytest.approx(row.sd * solver.solve_power(effect_size=None, nobs=5, alpha=0.05 / 4,
                                                                    power=0.8))
        assert row.seeds_needed == max(2, math.ceil(solver.solve_power(effect_size=0.02 / row.sd, nobs=None,
                                                                       alpha=0.05 / 4, power=0.8)))
    rc, md, _ = grpolab(capsys, "power", str(sweep), "--metrics", metrics, "--delta", "0.02")
    assert rc == 0 and md.count("\n| algorithm.kl.coef=") == 4
    assert "α/m = 0.05/4" in md and "Bonferroni" in md and "Holm" in md and "0.60–2.87×" in md


def _runs(sweep):
    import json
    from types import SimpleNamespace

    out = []
    for run in sorted((sweep / "runs").iterdir()):
        meta, summary = json.loads((run / "meta.json").read_text()), json.loads((run / "summary.json").read_text())
        out.append(SimpleNamespace(cell_id=meta["cell_id"], seed=meta["seed"], kl=meta["swept"]["algorithm.kl.coef"],
                                   **{k: v for k, v in summary.items() if isinstance(v, float)}))
    return out


def test_cli_says_what_is_missing_instead_of_numbers(tmp_path, capsys):
    one = write_synthetic_sweep(tmp_path / "one", axes={"variant": ["grpo", "ar"]}, seeds=range(1), steps=4,
                                eval_every=2, sweep_id="one")
    rc, out, _ = grpolab(capsys, "power", str(one), "--delta", "0.02", "--metrics", "final_eval_accuracy")
    assert rc == 0 and NEEDS_SEEDS in out and "nan" not in out.lower()
    rc, out, _ = grpolab(capsys, "power", str(one), "--delta", "0.02", "--sd", "0.03", "--comparisons", "12",
                         "--metrics", "final_eval_accuracy", "--format", "csv")
    row = _csv(out).iloc[0]  # one seed: planned as the paired t the table runs once the cells share 2 seeds
    assert rc == 0 and row.test == "paired-t" and row.sd_given and row.alpha_planning == pytest.approx(0.05 / 12)
    assert row.seeds_needed == math.ceil(TTestPower().solve_power(effect_size=0.02 / 0.03, nobs=None,
                                                                  alpha=0.05 / 12, power=0.8))


def test_identical_warm_start_has_no_spread_and_no_place_in_the_family(sweep, capsys):
    rc, out, _ = grpolab(capsys, "power", str(sweep), "--metrics", "warmstart_eval_accuracy,final_eval_accuracy",
                         "--delta", "0.02", "--format", "csv")
    plan = _csv(out)
    warm = plan[plan.metric == "warmstart_eval_accuracy"]
    assert rc == 0 and (warm.note.str.startswith("no spread")).all() and warm.mde.isna().all()
    assert (plan.comparisons == 2).all()  # as grpolab table corrects over the final accuracy only


@pytest.mark.parametrize("args,flag,valid", [
    (["--delta", "0"], "--delta", "> 0"), (["--delta", "-0.02"], "--delta", "> 0"),
    (["--delta", "final_eval_accuracy=abc"], "--delta", "> 0"), (["--power", "1.5"], "--power", "between 0 and 1"),
    (["--power", "0"], "--power", "between 0 and 1"), (["--alpha", "1"], "--alpha", "between 0 and 1"),
    (["--sd", "0"], "--sd", "> 0"), (["--comparisons", "0"], "--comparisons", "≥ 1")])
def test_a_bad_option_value_names_the_option_the_value_and_what_is_valid(sweep, capsys, args, flag, valid):
    rc, out, err = grpolab(capsys, "power", str(sweep), *args)
    last = err.strip().splitlines()[-1]
    assert rc == 2 and not out and "Traceback" not in err
    assert flag in last and repr(args[-1]) in last and valid in last


@pytest.mark.parametrize("args,says", [
    (["--metrics", "nope"], "unknown metric 'nope'"),
    (["--metrics", "final_eval_accuracy", "--delta", "final_reward=0.1"], "--delta names metric 'final_reward'"),
    (["--baseline", "none"], "--baseline none")])
def test_bad_input_is_one_plain_line(sweep, capsys, args, says):
    rc, out, err = grpolab(capsys, "power", str(sweep), *args)
    assert rc == 2 and not out and len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err


def test_welch_and_sign_flip_rows_follow_the_table_s_test():
    acc = simulate(Design(cells=3, seeds=6), 1, rng=np.random.default_rng(4))[0]
    df, prompts = records(acc)
    run = acc.mean(-1)  # [cells, seeds]
    welch = plan_table(summarize(df, ["final_eval_accuracy"], ["cell"], test="welch", n_boot=10), {None: 0.05})
    for k, row in enumerate(welch.rows, start=1):
        assert row.test == "welch" and (row.n, row.n_base) == (6, 6)
        assert (row.sd, row.sd_base) == pytest.approx((run[k].std(ddof=1), run[0].std(ddof=1)))
        assert row.plan.power == pytest.approx(plan_unpaired(row.sd, 6, row.sd_base, 6, 0.05, 0.025).power)
    flip = plan_table(summarize(df, ["final_eval_accuracy"], ["cell"], prompts=prompts, test="sign-flip", n_boot=10),
                      {None: 0.05})
    assert all(r.plan.power == 0 and r.plan.seeds >= 7 for r in flip.rows)  # 2/2^6 > 0.05/2: no rejection at 6
