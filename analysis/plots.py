"""Plots of a sweep: learning curves per cell with seed bands, and the diagnostics
(likelihood change of correct responses, per-π_old-bin statistics), as PNG (and PDF/SVG).

    grpolab plot SWEEP_DIR|wandb://ENTITY/PROJECT/SWEEP_ID [--out DIR] [--metrics eval/accuracy,train/reward]
                 [--group k1,k2] [--band ci|std|minmax|none] [--baseline k=v] [--label k=TEXT]
                 [--plot-format png,pdf,svg]

Curves: per cell (the ``--group`` keys; default all swept keys), the mean over seeds at each
logged step, with a band of the 95% Student-t CI of that mean (``--band``), clipped to the
metric's range; colours, line styles and markers from ``analysis.plot_style``, the baseline cell
black and thicker. Images have a fixed size (``FIGSIZE`` × ``DPI``), so a report's layout does
not depend on legend length.
"""
from __future__ import annotations

import argparse
import io
import math
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from analysis import render
from analysis.cells import cell_sort_key, group_value, same_value
from analysis.cli_args import add_source_args, csv_list, dry_run_line, epilog, parse_baseline
from analysis.history import history_keys, load_curves, resolve_key
from analysis.labels import add_label_arg, check_labels, parse_labels
from analysis.plot_style import OKABE_ITO, clip_band, curve_style
from analysis.run_configs import sparse_eval_warning
from analysis.sources import default_out_dir, resolve_source, runs_frame
from analysis.stats import LEVEL, t_quantile
from trainer.run_record import RunStatus

FIGSIZE, DPI = (9.0, 5.0), 100  # curves: 900 × 500 px
BINS_FIGSIZE = (12.0, 7.0)  # per-bin grid: 1200 × 700 px
CURVE_METRICS = ["eval/accuracy", "eval/pass@k", "train/reward", "train/response_length",
                 "diag/lld_mean", "diag/lld_lazy_frac", "diag/flip_against_sign_frac"]
TITLES = {
    "eval/accuracy": "Eval accuracy (pass@1)",
    "eval/pass@k": "Eval pass@k (unbiased estimator)",
    "train/reward": "Train reward",
    "train/response_length": "Response length (tokens)",
    "diag/lld_mean": "Likelihood change of correct responses (LLD, mean)",
    "diag/lld_lazy_frac": "Fraction of correct responses whose likelihood fell (lazy)",
    "diag/flip_against_sign_frac": "Fraction of tokens moved against their advantage sign",
}
BIN_STATS = ["token_frac", "abs_adv", "grad_proxy", "dprob", "pos_right_frac", "neg_right_frac"]
_BIN_KEY = re.compile(r"^diag/bin(\d+)_(.+)$")
BANDS = ("ci", "std", "minmax", "none")
PLOT_FORMATS = ("png", "pdf", "svg")


def slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_")


def cell_label(keys, values, labels: dict | None = None) -> str:
    """``kl.coef=0.01, variant=ar``: each key by its ``--label`` or its last two dotted parts."""
    def key_name(k):
        return (labels or {}).get(k) or ".".join(k.split(".")[-2:])
    return ", ".join(f"{key_name(k)}={render.fmt_key(v)}" for k, v in zip(keys, values)) or "all runs"


def baseline_cell(cells, group_keys, baseline, plan_first) -> tuple | None:
    """The cell (a tuple over ``group_keys``) drawn as the baseline: ``baseline`` ({key: value},
    other keys as the plan's first run; None: the plan's first run; False: none) if some cell
    matches it, else None. A key of ``baseline`` that is not a group key is refused."""
    if baseline is False or not group_keys:
        return None
    spec = dict(baseline or {})
    for k in spec:
        if k not in group_keys:
            raise ValueError(f"--baseline {k}: not a group key; group keys: {', '.join(group_keys)}")
    want = {k: spec.get(k, plan_first.get(k)) for k in group_keys}
    return next((c for c in cells if all(same_value(v, want[k]) for k, v in zip(group_keys, c))), None)


def _constant(cells, group_keys) -> dict:
    """{key: value} of group keys with one value in every cell of a figure (said once, in the legend's title)."""
    if len(cells) < 2:
        return {}
    return {k: cells[0][i] for i, k in enumerate(group_keys) if len({render.fmt_key(c[i]) for c in cells}) == 1}


def _band(vals: np.ndarray, how: str, level: float = LEVEL):
    n = len(vals)
    m = vals.mean()
    if how == "minmax":
        return vals.min(), vals.max()
    if n < 2 or how == "none":
        return m, m
    s = vals.std(ddof=1)
    half = s if how == "std" else t_quantile((1 + level) / 2, n - 1) * s / math.sqrt(n)
    return m - half, m + half


def _cells(curves: pd.DataFrame, group_keys, value_order):
    """[(cell tuple, its rows)] in table order."""
    if not group_keys:
        return [((), curves)] if len(curves) else []
    cols = [curves[k].map(group_value) for k in group_keys]
    labels = pd.Series(list(zip(*cols)), index=curves.index, dtype=object)
    parts = {cell: curves.loc[idx] for cell, idx in labels.groupby(labels, sort=False).groups.items()}
    return [(c, parts[c]) for c in sorted(parts, key=cell_sort_key(group_keys, value_order))]


def _new_fig(figsize):
    fig = plt.figure(figsize=figsize, dpi=DPI)
    return fig


def _fit_legend(fig, ax, legend) -> None:
    """Narrow the axes (to 40% of the figure at least) so the legend to its right ends inside the
    figure, with smaller type where long cell labels need it."""
    x0, y0, w, h = ax.get_position().bounds
    for size in (None, "x-small", "xx-small"):
        for text in [*legend.get_texts(), legend.get_title()] if size else []:
            text.set_fontsize(size)
        width = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.bbox.width
        fit = 0.985 - x0 - width - 0.02 * w  # the legend sits 2% of the axes width right of it
        if fit >= min(w, 0.4):
            break
    ax.set_position([x0, y0, max(0.3, min(w, fit)), h])


def curve_figure(curves: pd.DataFrame, metric: str, group_keys, value_order=None, band: str = "ci",
                 baseline: tuple | None = None, labels: dict | None = None):
    """One axes: per cell, mean over seeds vs step with a ``band`` around it (clipped to the
    metric's range); ``baseline``: the cell tuple drawn black and thick; ``labels``: shown names."""
    fig = _new_fig(FIGSIZE)
    data = curves[curves["metric"] == metric]
    cells = _cells(data, group_keys, value_order or {})
    constant = _constant([c for c, _ in cells], group_keys)
    shown_keys = [k for k in group_keys if k not in constant]
    many = len(cells) > 8  # a long legend: smaller type, more room for it
    ax = fig.add_axes([0.08, 0.11, 0.54 if many else 0.58, 0.8])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    others = 0
    for cell, rows in cells:
        is_base = baseline is not None and cell == baseline
        style = curve_style(others, baseline=is_base)
        others += not is_base
        agg = rows.groupby("step")["value"].agg(list)
        steps = agg.index.to_numpy(dtype=float)
        vals = [np.asarray(v, dtype=float) for v in agg]
        mean = np.array([v.mean() for v in vals])
        lo, hi = np.array([_band(v, band) for v in vals]).T if len(vals) else ([], [])
        lo, hi = clip_band(metric, lo, hi)
        n_seeds = rows["run_dir"].nunique()
        shown = cell_label(shown_keys, tuple(v for k, v in zip(group_keys, cell) if k not in constant), labels)
        ax.plot(steps, mean, label=f"{shown} (n={n_seeds}){' (baseline)' if is_base else ''}",
                **style.plot_kwargs(len(steps), others))
        if band != "none":
            ax.fill_between(steps, lo, hi, color=style.color, alpha=0.12 if is_base else 0.18, lw=0,
                            zorder=style.zorder - 1)
    ax.set_xlabel("step")
    ax.set_ylabel((labels or {}).get(metric, metric))
    ax.set_title((labels or {}).get(metric) or TITLES.get(metric, metric), fontsize=11)
    ax.grid(alpha=0.3)
    band_text = {"ci": f"band: {round(100 * LEVEL)}% CI over seeds", "std": "band: ±1 std over seeds",
                 "minmax": "band: min–max over seeds", "none": ""}[band]
    if constant:
        band_text = "\n".join(filter(None, [f"all: {cell_label(list(constant), tuple(constant.values()), labels)}",
                                            band_text]))
    if cells:
        size = "x-small" if many else "small"
        legend = ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=size, frameon=False,
                           title=band_text, title_fontsize=size, handlelength=3.2)
        _fit_legend(fig, ax, legend)
    else:
        ax.text(0.5, 0.5, f"no logged values of {metric}", ha="center", va="center", transform=ax.transAxes)
    return fig


def _bin_labels(edges, n_bins):
    if edges is None or len(edges) + 1 != n_bins:
        return [f"bin {k}" for k in range(n_bins)]
    bounds = [0.0, *edges, 1.0]
    return [f"[{a:g}, {b:g}{']' if k == n_bins - 1 else ')'}" for k, (a, b) in enumerate(zip(bounds, bounds[1:]))]


HATCHES = ["", "//", "..", "xx"]  # beyond the 7 colours, bars differ by hatch


def bins_figure(curves: pd.DataFrame, group_keys, value_order=None, edges=None, labels: dict | None = None):
    """Grid of per-π_old-bin statistics: per cell, each bin's value averaged over steps (per run),
    then over seeds (bar = mean, error bar = 95% CI over seeds)."""
    parsed = curves["metric"].str.extract(_BIN_KEY)
    data = curves.assign(bin=pd.to_numeric(parsed[0]), stat=parsed[1]).dropna(subset=["bin"])
    stats_present = [s for s in BIN_STATS if (data["stat"] == s).any()]
    n_bins = int(data["bin"].max()) + 1 if len(data) else 0
    fig = _new_fig(BINS_FIGSIZE)
    ncols = 3
    nrows = max(1, math.ceil(len(stats_present) / ncols))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    cells = _cells(data, group_keys, value_order or {})
    width = 0.8 / max(1, len(cells))
    x = np.arange(n_bins)
    for ax, stat in zip(axes.flat, stats_present):
        for i, (cell, rows) in enumerate(cells):
            per_run = rows[rows["stat"] == stat].groupby(["bin", "run_dir"])["value"].mean()
            means, errs = np.full(n_bins, np.nan), np.zeros(n_bins)
            for b in range(n_bins):
                if b in per_run.index.get_level_values(0):
                    v = per_run.loc[b].to_numpy(dtype=float)
                    lo, hi = _band(v, "ci")
                    means[b], errs[b] = v.mean(), (hi - lo) / 2
            ax.bar(x + (i - (len(cells) - 1) / 2) * width, means, width, yerr=errs, capsize=1.5,
                   color=OKABE_ITO[i % len(OKABE_ITO)], hatch=HATCHES[i // len(OKABE_ITO) % len(HATCHES)],
                   label=cell_label(group_keys, cell, labels), error_kw={"lw": 0.6})
        ax.set_title(stat, fontsize=9)
        ax.set_xticks(x, _bin_labels(edges, n_bins), fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(stats_present):]:
        ax.axis("off")
    if not stats_present:
        axes[0, 0].text(0.5, 0.5, "no diag/bin* statistics logged", ha="center", va="center")
    fig.suptitle("Per π_old-bin statistics (mean over steps per run; bars: mean ± 95% CI over seeds)", fontsize=10)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize="x-small", frameon=False)
    fig.subplots_adjust(left=0.05, right=0.98, top=0.9, bottom=0.16, hspace=0.35, wspace=0.2)
    return fig


def sweep_figures(source, group_keys=None, metrics=None, band: str = "ci", df=None, baseline=None,
                  labels: dict | None = None) -> dict:
    """{file stem: (title, Figure)} for every curve metric logged and, if logged (and ``metrics``
    is not given), the per-bin grid. ``baseline``: the cell drawn as the baseline ({key: value},
    None for the plan's first run, False for none); ``labels``: {swept key or metric: shown name}."""
    if band not in BANDS:
        raise ValueError(f"--band {band!r}: valid: {', '.join(BANDS)}")
    df = runs_frame(source) if df is None else df
    swept = df.attrs["swept_keys"]
    keys = swept if group_keys is None else list(group_keys)
    for k in keys:
        if k not in swept:
            raise ValueError(f"unknown group key {k!r}; available swept keys: {', '.join(swept) or '(none)'}")
    available = history_keys(df, source)
    wanted = CURVE_METRICS if metrics is None else list(metrics)
    if metrics is not None:
        for m in wanted:
            if resolve_key(m, available) is None:
                raise ValueError(f"metric {m!r} is not logged; logged keys include: {', '.join(available[:30])}")
    curve_keys = [m for m in wanted if resolve_key(m, available) is not None]
    check_labels(labels or {}, [*swept, *curve_keys])
    bin_keys = [k for k in available if _BIN_KEY.match(k) and _BIN_KEY.match(k).group(2) in BIN_STATS]
    curves = load_curves(df, source, curve_keys + bin_keys, keys)
    order = df.attrs.get("value_order", {})
    cells = [c for c, _ in _cells(curves, keys, order)]
    base = baseline_cell(cells, keys, baseline, df.attrs.get("plan_first", {}))
    figs = {slug(m): ((labels or {}).get(m) or TITLES.get(m, m),
                      curve_figure(curves, m, keys, order, band, base, labels)) for m in curve_keys}
    if bin_keys and metrics is None:
        done = df.loc[df["status"] == RunStatus.completed.value, "run_dir"]
        cfg = source.config(done.iloc[0]) if len(done) else {}
        edges = (cfg.get("diagnostics") or {}).get("prob_bins")
        figs["diag_prob_bins"] = ("Per π_old-bin statistics of the update (diag/bin*)",
                                  bins_figure(curves[curves["metric"].isin(bin_keys)], keys, order, edges,
                                              labels))
    return figs


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def write_plots(source, out_dir, formats=("png",), **kwargs) -> list[Path]:
    """Write every figure of ``sweep_figures(source, **kwargs)`` once per format (png, pdf, svg)."""
    bad = [f for f in formats if f not in PLOT_FORMATS]
    if bad or not formats:
        raise ValueError(f"--plot-format {','.join(formats)}: valid: {', '.join(PLOT_FORMATS)} (comma-separated)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (_, fig) in sweep_figures(source, **kwargs).items():
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            fig.savefig(path, format=fmt, dpi=DPI)
            paths.append(path)
        plt.close(fig)
    return paths


EXAMPLES = [
    ("grpolab plot outputs/sweeps/lopti", "learning curves with seed bands, LLD and probability-bin plots"),
    ("grpolab plot kl --metrics eval/accuracy,train/kl --band std --out kl_plots", "two curves, ± std"),
    ("grpolab plot --root outputs kl_search --group algorithm.clip.high", "a tune study's runs"),
    ("grpolab plot kl --plot-format png,pdf --label algorithm.kl.coef=β --baseline algorithm.kl.coef=0",
     "PNG and PDF, the key named β, kl=0 drawn as the baseline"),
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grpolab plot", description="Learning-curve and diagnostics PNGs of a sweep: "
                                "one line per cell, its seeds as a band.", epilog=epilog(EXAMPLES),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_args(p)
    p.add_argument("--out", default=None, help="output folder (default SWEEP_DIR/plots; ./<sweep id>/plots for W&B)")
    p.add_argument("--metrics", type=csv_list, default=None,
                   help=f"history keys to plot (default: those of {', '.join(CURVE_METRICS)} logged, "
                        "plus the bin grid)")
    p.add_argument("--group", type=csv_list, default=None, help="swept keys that make a cell (default: all)")
    p.add_argument("--band", default="ci", choices=BANDS,
                   help="the band around each cell's mean over seeds: ci = 95%% confidence interval, std = ± one "
                        "standard deviation, minmax = the seeds' range, none (default ci)")
    p.add_argument("--baseline", default=None,
                   help="the cell drawn black and thick, '(baseline)' in the legend: key=value,... (default: "
                        "the plan's first run), or 'none'")
    p.add_argument("--plot-format", type=csv_list, default=["png"],
                   help="comma-separated formats, each figure written in each: png (default), pdf, svg")
    add_label_arg(p)
    return p


def main(argv=None) -> int:
    """CLI: ``grpolab plot SWEEP_DIR|wandb://ENTITY/PROJECT/SWEEP_ID [--out DIR] [--metrics k1,k2]
    [--group k1,k2] [--band ci] [--baseline k=v|none] [--plot-format png,pdf,svg] [--label k=TEXT]``.
    Bad flags are refused before anything is read; the eval-schedule warning goes to stderr."""
    args = build_parser().parse_args(argv)
    try:
        labels, baseline = parse_labels(args.label), parse_baseline(args.baseline)
        bad = [f for f in args.plot_format if f not in PLOT_FORMATS]
        if bad or not args.plot_format:
            raise ValueError(f"--plot-format {','.join(args.plot_format)}: valid: {', '.join(PLOT_FORMATS)}")
        source = resolve_source(args.sweep_dir, args.root)
        out = Path(args.out) if args.out else default_out_dir(source) / "plots"
        if args.dry_run:
            swept = runs_frame(source).attrs["swept_keys"] if getattr(source, "root", None) is not None else None
            bad = [k for k in args.group or [] if swept is not None and k not in swept]
            if bad:
                raise ValueError(f"--group {','.join(bad)}: not swept; swept keys: {', '.join(swept) or '(none)'}")
            print(dry_run_line("plot", source, [f"{out}/*.{fmt}" for fmt in args.plot_format]))
            return 0
        paths = write_plots(source, out, formats=args.plot_format, group_keys=args.group,
                            metrics=args.metrics, band=args.band, baseline=baseline, labels=labels)
        if any(p.stem.startswith("eval_") for p in paths):
            warning = sparse_eval_warning(source, runs_frame(source))
            if warning:
                print(warning, file=sys.stderr)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for pth in paths:
        print(pth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
