"""Curves for publication: bands clipped to the metric's range, Okabe–Ito colours with distinct
line styles and markers, the baseline cell marked, n in every legend entry, PNG/PDF/SVG output,
labels, and the warning when the eval schedule leaves an eval curve with only its end points."""
from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.plot_style import BASELINE_COLOR, OKABE_ITO, curve_style, metric_range
from analysis.plots import curve_figure, main, sweep_figures
from analysis.records import DirSource
from analysis.synthetic import write_synthetic_sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return write_synthetic_sweep(tmp_path_factory.mktemp("style") / "s", axes={"variant": ["grpo", "ar", "lopti"],
                                                                              "lr": [1e-6]},
                                 seeds=range(3), steps=4, eval_every=2)


def _curves(metric, values_per_step):
    """A long curves frame: one cell, runs r0.. with the given values at steps 0, 1, ..."""
    rows = [{"run_dir": f"r{j}", "seed": j, "variant": "a", "step": s, "metric": metric, "value": v}
            for s, vals in enumerate(values_per_step) for j, v in enumerate(vals)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("metric, clipped", [("eval/accuracy", True), ("train/reward", False)])
def test_band_is_clipped_to_the_metrics_range(metric, clipped):
    vals = [0.9, 0.97, 1.0]  # the t interval of their mean reaches above 1
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(vals), scale=stats.sem(vals))
    assert hi > 1.05
    fig = curve_figure(_curves(metric, [vals, vals]), metric, ["variant"])
    top = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1.0 if clipped else hi)
    bottom = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1].min()
    assert bottom == pytest.approx(lo)  # the lower edge is inside the range: unchanged


def test_metric_ranges():
    assert metric_range("eval/accuracy") == metric_range("eval/pass@8") == metric_range("diag/lld_lazy_frac") == (0, 1)
    assert metric_range("train/response_length") == (0, np.inf)
    assert metric_range("diag/lld_mean") == (-np.inf, np.inf)


def test_styles_are_colour_blind_safe_and_distinct_without_colour():
    styles = [curve_style(i) for i in range(84)]
    assert {s.color for s in styles} == set(OKABE_ITO)
    assert len({(s.color, s.linestyle, s.marker) for s in styles}) == 84
    assert len({(s.linestyle, s.marker) for s in styles[:12]}) == 12  # greyscale: the first 12 still differ
    base = curve_style(0, baseline=True)
    assert base.color == BASELINE_COLOR and base.linewidth > max(s.linewidth for s in styles)


def test_baseline_marked_and_n_in_every_legend_entry(sweep):
    figs = sweep_figures(DirSource(sweep), metrics=["eval/accuracy"], baseline={"variant": "ar"},
                         labels={"variant": "method"})
    ax = figs["eval_accuracy"][1].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["method=grpo (n=3)", "method=ar (n=3) (baseline)", "method=lopti (n=3)"]
    assert ax.get_legend().get_title().get_text().startswith("all: lr=1e-06")  # constant key, said once
    lines = {ln.get_label(): ln for ln in ax.lines}
    base = lines["method=ar (n=3) (baseline)"]
    assert mcolors.to_hex(base.get_color()) == BASELINE_COLOR
    assert base.get_linewidth() > lines["method=grpo (n=3)"].get_linewidth()
    assert len({(ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in ax.lines}) == 3
    none = sweep_figures(DirSource(sweep), metrics=["eval/accuracy"], baseline=False)["eval_accuracy"][1]
    assert not any("(baseline)" in ln.get_label() for ln in none.axes[0].lines)


def test_plot_formats_each_figure_in_each(sweep, tmp_path, capsys):
    out = tmp_path / "p"
    assert main([str(sweep), "--out", str(out), "--metrics", "eval/accuracy,train/reward",
                 "--plot-format", "png,pdf,svg"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{m}.{f}" for m in ("eval_accuracy", "train_reward")
                                                           for f in ("png", "pdf", "svg"))
    assert (out / "eval_accuracy.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in (out / "eval_accuracy.svg").read_bytes()[:2000]
    assert (out / "train_reward.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main([str(sweep), "--out", str(out), "--plot-format", "png,jpg"]) == 2
    assert capsys.readouterr().err == "error: --plot-format png,jpg: valid: png, pdf, svg\n"


def test_plot_refuses_unknown_label_and_baseline_keys(sweep, capsys):
    assert main([str(sweep), "--metrics", "eval/accuracy", "--label", "nope=X"]) == 2
    assert capsys.readouterr().err == "error: --label nope=X: unknown key 'nope'; valid: variant, lr, eval/accuracy\n"
    assert main([str(sweep), "--group", "variant", "--baseline", "lr=0.1"]) == 2
    assert capsys.readouterr().err == "error: --baseline lr: not a group key; group keys: variant\n"


def test_warning_when_eval_every_leaves_only_end_points(tmp_path, capsys):
    sparse = write_synthetic_sweep(tmp_path / "sparse", axes={"variant": ["grpo", "ar"]}, seeds=range(2), steps=4,
                                   eval_every=10)
    assert main([str(sparse), "--out", str(tmp_path / "p"), "--metrics", "eval/accuracy"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: train.eval_every=10 >= train.steps=4 in 4 of 4 completed runs (e.g. ")
    assert len(err.splitlines()) == 1 and "only the warm-start and final points" in err
    fig = sweep_figures(DirSource(sparse), metrics=["eval/accuracy"])["eval_accuracy"][1]
    assert all(list(ln.get_xdata()) == [0, 4] for ln in fig.axes[0].lines)  # what the warning is about
    dense = write_synthetic_sweep(tmp_path / "dense", axes={"variant": ["grpo", "ar"]}, seeds=range(2), steps=4,
                                  eval_every=2)
    assert main([str(dense), "--out", str(tmp_path / "q"), "--metrics", "eval/accuracy"]) == 0
    assert capsys.readouterr().err == ""


def test_a_long_legend_stays_inside_the_figure():
    long = "a_rather_long_variant_name_that_would_run_off_the_edge_of_the_figure"
    frames = [_curves("eval/accuracy", [[0.3, 0.4], [0.5, 0.6]]).assign(variant=v) for v in (long, long + "_2")]
    fig = curve_figure(pd.concat(frames).assign(run_dir=lambda d: d["variant"] + d["run_dir"]), "eval/accuracy",
                       ["variant"])
    renderer = fig.canvas.get_renderer()
    legend = fig.axes[0].get_legend().get_window_extent(renderer)
    assert legend.x1 <= fig.bbox.width and fig.axes[0].get_window_extent(renderer).x1 < legend.x0
