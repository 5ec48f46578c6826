"""The ablation table's statistics and layouts: 95% CIs, Δ vs a baseline (paired by seed, Welch
when asked or when cells share no seeds), Holm over the table, bold for significant improvements,
rows × cols pivots, baselines from the plan, CSV/LaTeX/HTML output.

Expected numbers are recomputed from the raw values: the CI with scipy's own t interval, the paired
p-value with ``scipy.stats.ttest_rel`` on the shared seeds, the Welch p-value both with scipy and by
hand (Welch–Satterthwaite degrees of freedom), the correction with statsmodels' ``multipletests``.
"""
from __future__ import annotations

import io
import json
import math
import statistics

import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.history import add_history_metrics, parse_metric
from analysis.records import DirSource, load_records
from analysis.synthetic import write_synthetic_sweep
from analysis.table import build_table, main, render_table, summarize

ACC = "final_eval_accuracy"
V, KL = "variant", "algorithm.kl.coef"


def write_cells(root, cells, plan_order=None):
    """Runs with given final_eval_accuracy values: cells = {(variant, kl): [acc per seed]}.
    Writes sweep.json with the runs in ``plan_order`` (default: dict order)."""
    plan = []
    for (variant, kl), accs in cells.items():
        for seed, acc in enumerate(accs):
            name = f"{variant}_{kl}_s{seed}"
            run = root / "runs" / name
            run.mkdir(parents=True)
            swept = {V: variant, KL: kl}
            (run / "meta.json").write_text(json.dumps({
                "run_id": name, "cell_id": f"{variant}{kl}", "config_hash": f"{variant}{kl}", "seed": seed,
                "swept": {**swept, "seed": seed}, "variant": variant}))
            (run / "summary.json").write_text(json.dumps({
                "status": "completed", ACC: acc, "final_response_length": 100.0 + 10 * acc,
                "wall_time_s": 100 + acc}))
            plan.append({"name": name, "swept": {**swept, "seed": seed}})
    if plan_order is not None:
        plan.sort(key=lambda r: plan_order.index((r["swept"][V], r["swept"][KL])))
    (root / "sweep.json").write_text(json.dumps({"sweep_id": "t", "swept_keys": [V, KL, "seed"], "runs": plan}))
    return root


CELLS = {
    ("grpo", 0.0): [0.40, 0.42, 0.41],
    ("grpo", 0.01): [0.45, 0.47, 0.44, 0.46],
    ("ar", 0.0): [0.50, 0.52, 0.55],
    ("ar", 0.01): [0.41, 0.39, 0.44],
}


@pytest.fixture
def cells_sweep(tmp_path):
    return write_cells(tmp_path / "sw", CELLS)


def welch_by_hand(a, b):
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return 2 * stats.t.sf(abs(t), dof)


def test_ci_and_paired_delta_and_p_match_scipy(cells_sweep):
    """Cells share seeds 0-2 (grpo/0.01 has a fourth): Δ and the paired t are over the shared seeds."""
    summ = summarize(load_records(cells_sweep), [ACC], [V, KL])
    assert summ.attrs["baseline"] == {V: "grpo", KL: 0.0}  # the plan's first run
    base = CELLS[("grpo", 0.0)]
    raw = []
    for _, row in summ.iterrows():
        vals = CELLS[(row[V], row[KL])]
        lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=statistics.mean(vals), scale=stats.sem(vals))
        assert row[f"{ACC}/mean"] == pytest.approx(statistics.mean(vals), abs=1e-12)
        assert row[f"{ACC}/ci"] == pytest.approx((hi - lo) / 2, rel=1e-9)
        assert row[f"{ACC}/n"] == len(vals)
        if (row[V], row[KL]) == ("grpo", 0.0):
            assert math.isnan(row[f"{ACC}/delta"]) and math.isnan(row[f"{ACC}/p"])
            continue
        shared = vals[:3]
        assert (row[f"{ACC}/test"], row[f"{ACC}/pairing"], row[f"{ACC}/pairs"]) == ("paired-t", "seed", 3)
        assert row[f"{ACC}/delta"] == pytest.approx(statistics.mean(shared) - statistics.mean(base), abs=1e-12)
        assert row[f"{ACC}/p"] == pytest.approx(stats.ttest_rel(shared, base).pvalue, rel=1e-9)
        assert row[f"{ACC}/p_welch"] == pytest.approx(welch_by_hand(vals, base), rel=1e-9)
        assert row[f"{ACC}/delta_lo"] <= row[f"{ACC}/delta"] <= row[f"{ACC}/delta_hi"]
        raw.append((row[f"{ACC}/p"], row[f"{ACC}/p_adj"]))
    assert [adj for _, adj in raw] == pytest.approx(list(multipletests([p for p, _ in raw], method="holm")[1]))


def test_welch_when_asked_matches_scipy_and_hand(cells_sweep):
    summ = summarize(load_records(cells_sweep), [ACC], [V, KL], test="welch", correction="none")
    base = CELLS[("grpo", 0.0)]
    for _, row in summ.iloc[1:].iterrows():
        vals = CELLS[(row[V], row[KL])]
        assert row[f"{ACC}/test"] == "welch"
        assert row[f"{ACC}/delta"] == pytest.approx(statistics.mean(vals) - statistics.mean(base), abs=1e-12)
        assert row[f"{ACC}/p"] == pytest.approx(welch_by_hand(vals, base), rel=1e-9)
        assert row[f"{ACC}/p"] == pytest.approx(stats.ttest_ind(vals, base, equal_var=False).pvalue, rel=1e-9)
        assert row[f"{ACC}/p_adj"] == row[f"{ACC}/p"]  # no correction
        ci = stats.ttest_ind(vals, base, equal_var=False).confidence_interval(0.95)
        assert (row[f"{ACC}/delta_lo"], row[f"{ACC}/delta_hi"]) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_cells_without_shared_seeds_fall_back_to_welch(tmp_path):
    root = write_cells(tmp_path / "s", {("grpo", 0.0): [0.40, 0.42, 0.41], ("ar", 0.0): [0.50, 0.52, 0.55]})
    for run in (root / "runs").glob("ar_*"):  # the ar runs get seeds 10-12: nothing to pair with
        meta = json.loads((run / "meta.json").read_text())
        meta["seed"] += 10
        (run / "meta.json").write_text(json.dumps(meta))
    plan = json.loads((root / "sweep.json").read_text())
    for r in plan["runs"]:
        if r["name"].startswith("ar_"):
            r["swept"]["seed"] += 10
    (root / "sweep.json").write_text(json.dumps(plan))
    summ = summarize(load_records(root), [ACC], [V, KL])
    row = summ.iloc[1]
    assert row[f"{ACC}/test"] == "welch"
    assert row[f"{ACC}/p"] == pytest.approx(stats.ttest_ind([0.50, 0.52, 0.55], [0.40, 0.42, 0.41],
                                                            equal_var=False).pvalue)
    assert "†" in render_table(root, metrics=[ACC]) and "Welch" in render_table(root, metrics=[ACC])


def test_rows_follow_the_plan_order_not_the_alphabet(cells_sweep):
    summ = summarize(load_records(cells_sweep), [ACC], [V, KL])
    assert list(zip(summ[V], summ[KL])) == list(CELLS)  # grpo before ar: as planned


def test_markdown_marks_and_bold_follow_the_corrected_paired_test(cells_sweep):
    """Every mark and bold recomputed independently: ttest_rel on the shared seeds, Holm over the
    table's comparisons with statsmodels; bold = significant and better in the metric's direction
    (the three metrics' directions: tests/test_analysis_table.py)."""
    metrics = [ACC]
    md = render_table(cells_sweep, metrics=metrics)
    rows = {tuple(line.split(" | ")[:2]): line.split(" | ") for line in md.splitlines()[2:6]}
    value = {ACC: lambda a: a, "wall_time_s": lambda a: 100 + a, "final_response_length": lambda a: 100 + 10 * a}
    better = {ACC: 1, "wall_time_s": -1, "final_response_length": 0}
    base = CELLS[("grpo", 0.0)]
    keys, ps, deltas = [], [], []
    for cell, vals in list(CELLS.items())[1:]:
        for m in metrics:
            a, b = [value[m](x) for x in vals[:3]], [value[m](x) for x in base]
            keys.append((cell, m))
            ps.append(stats.ttest_rel(a, b).pvalue)
            deltas.append(statistics.mean(a) - statistics.mean(b))
    adj = multipletests(ps, method="holm")[1]
    assert min(adj) < 0.05 < max(adj)  # the fixture has both kinds
    for ((variant, kl), m), p, d in zip(keys, adj, deltas):
        text = rows[(f"| {variant}", f"{kl:g}")][2 + metrics.index(m)]
        mark = "\\*\\*" if p < 0.01 else "\\*" if p < 0.05 else ""
        assert f"({d:+.3f} [" in text and text.endswith(f"]{mark})"), (variant, kl, m, text)
        assert text.startswith("**") == (p < 0.05 and better[m] * d > 0), (variant, kl, m, text)
    assert "(" not in rows[("| grpo", "0")][2]  # the baseline cell has no Δ
    notes = md.split("\n\n")[1]
    assert "baseline cell variant=grpo, algorithm.kl.coef=0" in notes and "paired t-test over seeds" in notes
    assert "Holm" in notes and "over the 3 comparisons of this table" in notes


def test_correction_option_changes_the_marks(cells_sweep):
    """ar/0 vs the baseline: ttest_rel p ≈ 0.014: starred alone, not once Holm counts nine comparisons."""
    p = stats.ttest_rel(CELLS[("ar", 0.0)], CELLS[("grpo", 0.0)]).pvalue
    assert 0.01 < p < 0.05 and p * 9 > 0.05
    metrics = [ACC, "wall_time_s", "final_response_length"]
    ar0 = lambda md: next(line for line in md.splitlines() if line.startswith("| ar | 0 |")).split(" | ")[2]  # noqa: E731
    assert ar0(render_table(cells_sweep, metrics=metrics, correction="none")).endswith("]\\*)")
    assert ar0(render_table(cells_sweep, metrics=metrics)).endswith("])")
    assert "no multiplicity correction" in render_table(cells_sweep, metrics=[ACC], correction="none")
    assert "Benjamini–Hochberg" in render_table(cells_sweep, metrics=[ACC], correction="bh")


def test_baseline_option_and_errors(cells_sweep):
    summ = build_table(DirSource(cells_sweep), [ACC], baseline={V: "ar"}).summary
    assert summ.attrs["baseline"] == {V: "ar", KL: 0.0}  # unspecified keys: the plan's first value
    with pytest.raises(ValueError, match=r"baseline variant=ppo matches no cell; valid values of variant: grpo, ar"):
        build_table(DirSource(cells_sweep), [ACC], baseline={V: "ppo"})
    with pytest.raises(ValueError, match=r"baseline key 'seed' is not a table key"):
        build_table(DirSource(cells_sweep), [ACC], baseline={"seed": "1"})
    none = build_table(DirSource(cells_sweep), [ACC], baseline=False).summary
    assert none.attrs["baseline"] is None and none[f"{ACC}/delta"].isna().all()


def test_cli_baseline_value_matches_numerically(cells_sweep, capsys):
    assert main([str(cells_sweep), "--metrics", ACC, "--baseline", f"{V}=ar,{KL}=0.01"]) == 0
    out = capsys.readouterr().out
    assert "baseline cell variant=ar, algorithm.kl.coef=0.01" in out
    assert main([str(cells_sweep), "--baseline", "variant"]) == 2
    assert "expected key=value" in capsys.readouterr().err


def test_cols_pivot_layout(cells_sweep):
    md = render_table(cells_sweep, metrics=[ACC], rows=[KL], cols=[V]).splitlines()
    assert md[0] == f"| {KL} | final eval accuracy · variant=grpo | final eval accuracy · variant=ar |"
    assert md[1] == "|---|---:|---:|"
    kl001 = md[3].split(" | ")
    assert kl001[0] == "| 0.01"
    grpo = CELLS[("grpo", 0.01)]
    assert kl001[1].replace("**", "").startswith(f"{statistics.mean(grpo):.3f} ± ")
    assert kl001[1].endswith("(n=4)")  # differs from the common n = 3
    assert "n = 3 seeds per cell unless marked" in md[5]


def test_pooling_unlisted_keys(cells_sweep):
    summ = build_table(DirSource(cells_sweep), [ACC], rows=[V]).summary
    grpo = CELLS[("grpo", 0.0)] + CELLS[("grpo", 0.01)]
    row = summ[summ[V] == "grpo"].iloc[0]
    assert row[f"{ACC}/n"] == 7 and row[f"{ACC}/mean"] == pytest.approx(statistics.mean(grpo))


def test_csv_is_tidy_and_unformatted(cells_sweep):
    text = render_table(cells_sweep, metrics=[ACC], fmt="csv")
    df = pd.read_csv(io.StringIO(text))
    assert list(df.columns) == [V, KL, "metric", "n", "mean", "std", "ci95_low", "ci95_high", "delta",
                                "delta_low", "delta_high", "test", "pairing", "pairs", "prompts", "p", "p_adj",
                                "p_welch", "baseline"]
    row = df[(df[V] == "ar") & (df[KL] == 0.0)].iloc[0]
    vals = CELLS[("ar", 0.0)]
    lo, hi = stats.t.interval(0.95, 2, loc=statistics.mean(vals), scale=stats.sem(vals))
    assert (row["ci95_low"], row["ci95_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert df["baseline"].tolist() == [True, False, False, False]


def test_format_all_writes_three_files(cells_sweep, tmp_path, capsys):
    stem = tmp_path / "out" / "kl"
    stem.parent.mkdir()
    assert main([str(cells_sweep), "--format", "all", "--out", str(stem), "--correction", "none"]) == 0
    assert capsys.readouterr().out == (stem.parent / "kl.md").read_text()
    tex = (stem.parent / "kl.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\bfseries 0." in tex  # ar/0: p ≈ 0.014 uncorrected
    assert pd.read_csv(stem.parent / "kl.csv")["metric"].iloc[0] == "final_eval_accuracy"


def test_format_all_leaves_the_sweeps_own_table_alone(cells_sweep, capsys):
    own = cells_sweep / "table.md"
    own.write_text("the table the sweep command wrote\n")
    assert main([str(cells_sweep), "--cols", V, "--format", "all"]) == 0
    out, err = capsys.readouterr()
    assert own.read_text() == "the table the sweep command wrote\n"
    written = [cells_sweep / "tables" / f"table{suffix}" for suffix in (".md", ".tex", ".csv")]
    assert all(p.is_file() for p in written) and (cells_sweep / "tables" / "table.md").read_text() == out
    assert err.strip() == "wrote " + ", ".join(map(str, written))


def test_latex_escapes_and_spans(cells_sweep):
    tex = render_table(cells_sweep, metrics=[ACC], rows=[KL], cols=[V], fmt="latex")
    # per data column: mean, ± CI, then Δ, [lo, hi], mark (analysis.latex_table): 2 × 6 columns under the metric
    assert "\\multicolumn{12}{c}{final eval accuracy}" in tex and "\\cmidrule(lr){2-13}" in tex
    assert " & \\multicolumn{6}{c}{variant=grpo} & \\multicolumn{6}{c}{variant=ar} \\\\" in tex
    assert "algorithm.kl.coef & \\multicolumn{2}{c}{mean $\\pm$ CI} & \\multicolumn{3}{c}{$\\Delta$ [CI]}" in tex
    assert "% (Δ" not in tex and "% ($\\Delta$ [lo, hi])" in tex  # notes as comments, Unicode made TeX


def test_html_table_marks(cells_sweep):
    html = render_table(cells_sweep, metrics=[ACC], fmt="html")
    assert html.count("<tr>") == 5 and 'class="baseline"' in html and "<b>0.523</b>" in html


def test_variant_axis_and_meta_variant_share_one_column(tmp_path):
    root = write_synthetic_sweep(tmp_path / "s", axes={V: ["grpo", "ar"]}, seeds=range(2), steps=4)
    df = load_records(root)
    assert list(df.columns).count(V) == 1 and sorted(set(df[V])) == ["ar", "grpo"]
    assert df.attrs["value_order"] == {V: ["grpo", "ar"]} and df.attrs["plan_first"] == {V: "grpo"}


def test_history_metrics_pass_at_k_and_step_means(tmp_path):
    root = write_synthetic_sweep(tmp_path / "s", axes={V: ["grpo"]}, seeds=range(2), steps=6, eval_every=3)
    src = DirSource(root)
    df = add_history_metrics(src.runs(), ["final_pass@k", "best_pass@k", "mean:diag/lld_mean"], src)
    for _, run in df.iterrows():
        lines = [json.loads(x) for x in (root / "runs" / run["run_id"] / "metrics.jsonl").read_text().splitlines()]
        passk = [x["eval/pass@4"] for x in lines if "eval/pass@4" in x]
        lld = [x["diag/lld_mean"] for x in lines if "diag/lld_mean" in x]
        assert run["final_pass@k"] == pytest.approx(passk[-1]) and run["best_pass@k"] == pytest.approx(max(passk))
        assert run["mean:diag/lld_mean"] == pytest.approx(statistics.mean(lld))
    with pytest.raises(ValueError, match="agg one of last, max, min, mean"):
        parse_metric("median:diag/lld_mean")


def test_history_metric_keeps_the_last_of_repeated_steps(tmp_path):
    run = write_cells(tmp_path / "s", {("grpo", 0.0): [0.5]}) / "runs" / "grpo_0.0_s0"
    lines = [{"step": 0, "eval/pass@8": 0.1}, {"step": 1, "eval/pass@8": 0.9}, {"step": 1, "eval/pass@8": 0.3}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    md = render_table(tmp_path / "s", metrics=["final_pass@k", "max:eval/pass@k"])
    assert "| grpo | 0 | 0.300 ± — | 0.300 ± — | 1 |" in md  # resumed step 1 overrides the first


def test_unknown_history_metric_is_nan_not_error(cells_sweep):
    md = render_table(cells_sweep, metrics=["diag/lld_mean"])
    assert md.splitlines()[2].endswith("| — ± — | 0 |")


def test_no_completed_run_gives_an_empty_table_with_the_reason(tmp_path):
    root = write_cells(tmp_path / "s", {("grpo", 0.0): [0.5, 0.6]})
    for summary in root.glob("runs/*/summary.json"):
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "preempted"}))
    md = render_table(root, metrics=[ACC], rows=[V]).splitlines()
    assert md[:2] == [f"| {V} | final eval accuracy | n |", "|---|---:|---:|"] and md[2] == ""
    assert md[-1] == "2 runs were not completed (preempted: 2) and excluded."
