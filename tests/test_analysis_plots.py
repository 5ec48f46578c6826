"""`grpolab plot`: learning curves per cell with seed bands and the diagnostics plots, as PNGs
of a fixed size; the plotted numbers are the per-step means over seeds."""
from __future__ import annotations

import json
import statistics
import struct

import matplotlib.image as mpimg
import numpy as np
import pytest
from scipy import stats

from analysis.plots import BINS_FIGSIZE, DPI, FIGSIZE, main, sweep_figures
from analysis.records import DirSource
from analysis.synthetic import write_synthetic_sweep

AXES = {"variant": ["grpo", "ar"], "algorithm.kl.coef": [0.0, 0.01]}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return write_synthetic_sweep(tmp_path_factory.mktemp("plots") / "sweep", axes=AXES, seeds=range(3),
                                 steps=6, eval_every=2)


def png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_plot_cli_writes_pngs_of_the_expected_size(sweep, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main([str(sweep), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == sorted(["eval_accuracy.png", "eval_pass_k.png", "train_reward.png", "train_response_length.png",
                            "diag_lld_mean.png", "diag_lld_lazy_frac.png", "diag_prob_bins.png"])
    assert capsys.readouterr().out.split() == [str(out / n) for n in
                                                ["eval_accuracy.png", "eval_pass_k.png", "train_reward.png",
                                                 "train_response_length.png", "diag_lld_mean.png",
                                                 "diag_lld_lazy_frac.png", "diag_prob_bins.png"]]
    for name in names:
        w, h = png_size(out / name)
        fig = BINS_FIGSIZE if name == "diag_prob_bins.png" else FIGSIZE
        assert (w, h) == (round(fig[0] * DPI), round(fig[1] * DPI)), name
        img = mpimg.imread(out / name)[..., :3]
        inked = (img < 0.9).any(axis=-1).mean()  # share of non-white pixels
        assert 0.02 < inked < 0.9, f"{name} looks blank ({inked:.1%} inked)"


def test_curve_is_the_seed_mean_with_a_t_ci_band(sweep):
    figs = sweep_figures(DirSource(sweep), group_keys=["variant"], metrics=["eval/accuracy"])
    title, fig = figs["eval_accuracy"]
    ax = fig.axes[0]
    assert title.startswith("Eval accuracy")
    line = ax.lines[0]  # the first cell in plan order: variant=grpo, pooled over kl (6 runs)
    assert line.get_label() == "variant=grpo (n=6) (baseline)"  # the plan's first cell
    per_step = {}
    for run in (sweep / "runs").iterdir():
        if json.loads((run / "meta.json").read_text())["swept"]["variant"] != "grpo":
            continue
        for rec in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()):
            if "eval/accuracy" in rec:
                per_step.setdefault(rec["step"], []).append(rec["eval/accuracy"])
    steps = sorted(per_step)
    assert list(line.get_xdata()) == steps
    assert line.get_ydata() == pytest.approx([statistics.mean(per_step[s]) for s in steps])
    band = ax.collections[0].get_paths()[0].vertices  # fill_between polygon: upper and lower edges
    vals = per_step[steps[-1]]
    lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=statistics.mean(vals), scale=stats.sem(vals))
    at_last = band[np.isclose(band[:, 0], steps[-1]), 1]
    assert min(at_last) == pytest.approx(lo) and max(at_last) == pytest.approx(hi)


def test_bad_group_key_and_unlogged_metric(sweep, capsys):
    assert main([str(sweep), "--group", "nope"]) == 2
    assert "unknown group key 'nope'" in capsys.readouterr().err
    assert main([str(sweep), "--metrics", "train/nothing"]) == 2
    assert "'train/nothing' is not logged" in capsys.readouterr().err
