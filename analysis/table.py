"""Ablation tables: per sweep cell, mean ± 95% CI over seeds, Δ vs a baseline cell with Welch's
test, best per column in bold; as Markdown, LaTeX (booktabs), CSV or HTML.

Only completed runs enter the statistics (a failed run's partial accuracy would bias the mean);
the excluded ones are counted under the table so a reader sees that a cell rests on fewer
seeds than planned. Grouping is done by hand (``analysis.cells``) rather than with
``DataFrame.groupby`` because swept values may be NaN or of mixed types and the order must be
the plan's. Which way a metric is better (the bold mark) is the run record's declaration
(``trainer.run_record.METRIC_DIRECTIONS``); a metric with no better direction is never bold.

Layout: ``rows`` and ``cols`` are swept keys; swept keys in neither are pooled (their runs
count as extra seeds of the cell). With ``cols``, each metric spans one column per value
combination of the ``cols`` keys.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import render
from analysis.cells import cell_sort_key, group_value, same_value
from analysis.cli_args import add_table_args, dry_run_line, epilog, parse_baseline
from analysis.history import add_history_metrics, is_history_metric, parse_metric
from analysis.sources import default_out_dir, open_source, resolve_source, runs_frame
from analysis.stats import LEVEL, mean_ci, significance_mark, welch_p
from trainer.run_record import Direction, RunStatus, direction

DEFAULT_METRICS = [
    "warmstart_eval_accuracy",
    "final_eval_accuracy",
    "best_eval_accuracy",
    "final_reward",
    "final_response_length",
]
FORMATS = ("md", "latex", "csv", "html")
SUFFIX = {"md": ".md", "latex": ".tex", "csv": ".csv", "html": ".html"}


def metric_direction(metric: str) -> Direction:
    """Which way a table metric is better, for the bold mark: the run record's declared direction
    (``trainer.run_record.direction``) of its summary key, or of the history key a derived metric
    aggregates (``mean:diag/lld_lazy_frac`` → ``diag/lld_lazy_frac``, ``final_pass@k`` →
    ``eval/pass@k``)."""
    return direction(parse_metric(metric)[1] if is_history_metric(metric) else metric)


def _resolve_baseline(cells, keys, baseline, plan_first):
    """The baseline cell tuple: the cells matching ``baseline`` (key → value), preferring the one
    that also matches the plan's first run on the other keys, else the first in table order.
    None for ``baseline is False``, no cells or no keys."""
    if baseline is False or not cells or not keys:
        return None
    spec = dict(baseline or {})
    for k in spec:
        if k not in keys:
            raise ValueError(f"baseline key {k!r} is not a table key; table keys: {', '.join(keys)}")

    def fits(cell, key, value):
        return same_value(cell[keys.index(key)], value)

    matching = [c for c in cells if all(fits(c, k, v) for k, v in spec.items())]
    if not matching:
        for k, v in spec.items():
            if not any(fits(c, k, v) for c in cells):
                valid = ", ".join(dict.fromkeys(render.fmt_key(c[keys.index(k)]) for c in cells))
                raise ValueError(f"baseline {k}={v} matches no cell; valid values of {k}: {valid}")
        raise ValueError(f"baseline {spec} matches no cell (no completed runs with that combination)")
    planned = [c for c in matching if all(k in spec or (k in plan_first and fits(c, k, plan_first[k])) for k in keys)]
    return (planned or matching)[0]


def summarize(df: pd.DataFrame, metrics, group_keys=None, baseline=None, level: float = LEVEL) -> pd.DataFrame:
    """Per-cell statistics of each metric over completed runs.

    Columns: the group keys, ``<metric>/mean``, ``/std`` (sample, ddof=1), ``/ci`` (half-width
    of the ``level`` Student-t interval), ``/n``, ``/delta`` (mean − baseline mean) and ``/p``
    (Welch's two-sided t-test vs the baseline cell), and ``n_runs``. ``baseline`` is a
    {key: value} dict (missing keys default to the plan's first run), None for that default,
    or False for no comparison. ``attrs``: ``excluded`` (non-completed status → count),
    ``group_keys``, ``metrics``, ``baseline`` ({key: value} or None), ``level``.
    """
    keys = list(df.attrs.get("swept_keys", []) if group_keys is None else group_keys)
    metrics = list(metrics)
    absent = [c for c in keys + metrics if c not in df.columns]
    if absent:
        raise ValueError(f"columns not in records: {', '.join(absent)}")
    done = df[df["status"] == RunStatus.completed.value]
    groups: dict[tuple, list] = {}
    for label, values in zip(done.index, done[keys].itertuples(index=False, name=None)):
        groups.setdefault(tuple(group_value(v) for v in values), []).append(label)
    cells = sorted(groups, key=cell_sort_key(keys, df.attrs.get("value_order", {})))
    base = _resolve_baseline(cells, keys, baseline, df.attrs.get("plan_first", {}))
    numeric = {m: pd.to_numeric(done[m], errors="coerce") for m in metrics}
    values = {c: {m: numeric[m].loc[groups[c]].dropna().to_numpy(dtype=float) for m in metrics} for c in cells}
    rows = []
    for cell in cells:
        row = dict(zip(keys, cell))
        for m in metrics:
            vals = values[cell][m]
            mean, ci = mean_ci(vals, level)
            row[f"{m}/mean"], row[f"{m}/ci"], row[f"{m}/n"] = mean, ci, int(len(vals))
            row[f"{m}/std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
            if base is None or cell == base:
                row[f"{m}/delta"], row[f"{m}/p"] = math.nan, math.nan
            else:
                ref = values[base][m]
                row[f"{m}/delta"] = mean - ref.mean() if len(ref) and len(vals) else math.nan
                row[f"{m}/p"] = welch_p(vals, ref)
        row["n_runs"] = len(groups[cell])
        rows.append(row)
    stat_cols = [f"{m}/{s}" for m in metrics for s in ("mean", "std", "ci", "n", "delta", "p")]
    out = pd.DataFrame(rows, columns=keys + stat_cols + ["n_runs"])
    not_done = df["status"] != RunStatus.completed.value
    excluded = Counter(df.loc[not_done, "status"].fillna(RunStatus.missing.value))
    out.attrs.update(excluded=dict(sorted(excluded.items())), group_keys=keys, metrics=metrics,
                     baseline=dict(zip(keys, base)) if base is not None else None, level=level)
    return out


# ---------------------------------------------------------------- layout
@dataclass
class Cell:
    mean: float
    ci: float
    n: int
    delta: float
    p: float
    baseline: bool = False
    best: bool = False
    n_note: str = ""  # shown when the cell's n differs from the table's common n

    @property
    def mark(self) -> str:
        return significance_mark(self.p)


@dataclass
class TableLayout:
    """A table laid out for rendering (``analysis.render``): ``body`` rows are (row-key values,
    cells, min n)."""

    row_keys: list
    col_keys: list
    columns: list  # [(metric, col-key values tuple)]
    body: list = field(default_factory=list)
    show_n: bool = True
    notes: list = field(default_factory=list)
    footer: str = ""

    def key_digits(self, digits: int | None) -> int | None:
        """Digits for the swept values: ``digits``, or more where two values would round alike."""
        if digits is None:
            return None
        rows = [[label[i] for label, _, _ in self.body] for i in range(len(self.row_keys))]
        cols = [[vals[i] for _, vals in self.columns] for i in range(len(self.col_keys))]
        return render.distinct_digits(rows + cols, digits)

    def column_labels(self, joiner, digits: int | None = None):
        """Per data column: ``metric · k=v`` (joiner given) or ``k=v`` only (joiner None); values
        rounded to ``digits`` (``render.fmt_key``), or finer where two would look alike."""
        labels = []
        kd = self.key_digits(digits)
        for metric, vals in self.columns:
            kv = ", ".join(f"{k}={render.fmt_key(v, kd)}" for k, v in zip(self.col_keys, vals))
            labels.append(kv if joiner is None else (f"{metric}{joiner}{kv}" if kv else metric))
        return labels

    def metric_spans(self):
        spans: list[list] = []
        for metric, _ in self.columns:
            if spans and spans[-1][0] == metric:
                spans[-1][1] += 1
            else:
                spans.append([metric, 1])
        return [tuple(s) for s in spans]


def _plural(n, one, many):
    return one if n == 1 else many


def _bold_note(better: dict) -> str:
    """What the bold marks, per metric direction (``better``: {metric: Direction})."""
    higher, lower, unmarked = ([m for m, d in better.items() if d == want]
                               for want in (Direction.higher, Direction.lower, Direction.none))
    if not higher and not lower:
        return "Nothing is bold: no metric here has a better direction."
    if not higher:
        which = "lower is better"
    else:
        which = "higher is better" + (f"; lower for {', '.join(lower)}" if lower else "")
    return f"Bold: best mean per column ({which})" + (f"; none marked for {', '.join(unmarked)}." if unmarked else ".")


def layout_table(summary: pd.DataFrame, metrics, rows, cols=(), digits: int = 3) -> TableLayout:
    """Lay ``summary`` (grouped by ``rows + cols``) out as rows × (metric, col values) cells; the
    notes show swept values rounded to ``digits`` as the table does."""
    metrics, rows, cols = list(metrics), list(rows), list(cols)
    row_vals = list(dict.fromkeys(tuple(r) for r in summary[rows].itertuples(index=False, name=None)))
    col_vals = list(dict.fromkeys(tuple(r) for r in summary[cols].itertuples(index=False, name=None)))
    if not rows and len(summary):
        row_vals = [()]
    if not col_vals:  # one data column per metric, even when no cell has completed runs
        col_vals = [()]
    layout = TableLayout(rows, cols, [(m, cv) for m in metrics for cv in col_vals], show_n=not cols)
    base = summary.attrs.get("baseline")
    base_t = tuple(base[k] for k in rows + cols) if base else None
    lookup = {}
    for _, r in summary.iterrows():
        key = tuple(r[k] for k in rows + cols)
        lookup[key] = {m: Cell(r[f"{m}/mean"], r[f"{m}/ci"], int(r[f"{m}/n"]), r[f"{m}/delta"], r[f"{m}/p"],
                               baseline=key == base_t) for m in metrics}
    ns = [c.n for d in lookup.values() for c in d.values()]
    common = Counter(ns).most_common(1)[0][0] if ns else 0
    for rv in row_vals:
        cells = [lookup.get(rv + cv, {}).get(m) for m, cv in layout.columns]
        present = [c for c in cells if c is not None]
        if cols:
            for c in present:
                c.n_note = str(c.n) if c.n != common else ""
        # n: seeds behind the row's numbers; a metric this cell never logs (e.g. Lopti's stage
        # fractions in a GRPO row) is shown as "—" and does not make the row's n 0
        layout.body.append((rv, cells, min((c.n for c in present if c.n > 0), default=0)))
    better = {m: metric_direction(m) for m in metrics}
    for j, (metric, _) in enumerate(layout.columns):  # bold: best mean per column
        col = [row[1][j] for row in layout.body if row[1][j] is not None and math.isfinite(row[1][j].mean)]
        if better[metric] != Direction.none and len({c.mean for c in col}) > 1:  # all equal: nothing is best
            best = (max if better[metric] == Direction.higher else min)(c.mean for c in col)
            for c in col:
                c.best = c.mean == best
    level = round(100 * summary.attrs.get("level", LEVEL))
    n_text = "n = completed seeds per cell" if not cols else f"n = {common} seeds per cell unless marked"
    layout.notes.append(f"Mean ± {level}% CI half-width over seeds (Student t, n−1 dof); {n_text}.")
    if base:
        desc = ", ".join(f"{k}={render.fmt_key(v, digits)}" for k, v in base.items())
        layout.notes.append(f"(Δ): difference of means vs the baseline cell {desc}; "
                            "* p < 0.05, ** p < 0.01, Welch's two-sided t-test.")
    layout.notes.append(_bold_note(better))
    excluded = summary.attrs.get("excluded", {})
    total = sum(excluded.values())
    if total:
        detail = ", ".join(f"{s}: {c}" for s, c in excluded.items())
        layout.footer = f"{total} {_plural(total, 'run was', 'runs were')} not completed ({detail}) and excluded."
    return layout


def markdown_table(summary: pd.DataFrame, metrics, group_keys, digits: int = 3, cols=()) -> str:
    """GitHub Markdown of ``summary``; rows-only layouts end with ``n``, the smallest per-metric
    count of the row (the seeds every number in it rests on)."""
    return render.markdown(layout_table(summary, metrics, [k for k in group_keys if k not in cols], cols, digits),
                           digits)


def csv_table(summary: pd.DataFrame) -> str:
    """Tidy CSV: one line per cell × metric with the unformatted statistics."""
    keys, metrics = summary.attrs["group_keys"], summary.attrs["metrics"]
    base = summary.attrs.get("baseline")
    lvl = round(100 * summary.attrs.get("level", LEVEL))
    recs = []
    for _, r in summary.iterrows():
        for m in metrics:
            mean, ci = r[f"{m}/mean"], r[f"{m}/ci"]
            recs.append({**{k: r[k] for k in keys}, "metric": m, "n": r[f"{m}/n"], "mean": mean,
                         "std": r[f"{m}/std"], f"ci{lvl}_low": mean - ci, f"ci{lvl}_high": mean + ci,
                         "delta": r[f"{m}/delta"], "p_welch": r[f"{m}/p"],
                         "baseline": bool(base) and all(same_value(r[k], base[k]) for k in keys)})
    return pd.DataFrame(recs).to_csv(index=False)


# ---------------------------------------------------------------- sweep → table
@dataclass
class Table:
    summary: pd.DataFrame
    layout: TableLayout

    def render(self, fmt: str = "md", digits: int = 3) -> str:
        if fmt == "csv":
            return csv_table(self.summary)
        return {"md": render.markdown, "latex": render.latex, "html": render.html_table}[fmt](self.layout, digits)


def build_table(source, metrics=None, rows=None, cols=None, baseline=None, level: float = LEVEL,
                df: pd.DataFrame | None = None, digits: int = 3) -> Table:
    """Validate the keys against the records, derive history metrics, summarize and lay out (the
    notes' values to ``digits``, as ``Table.render`` shows the table's)."""
    df = runs_frame(source) if df is None else df
    swept, available = df.attrs["swept_keys"], df.attrs["metric_keys"]
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m in available]
    derived = [m for m in metrics if m not in available and is_history_metric(m)]
    for m in metrics:
        if m not in available and m not in derived:
            raise ValueError(f"unknown metric {m!r}; available metrics: {', '.join(available) or '(none)'} "
                             "or history metrics like final_pass@k, diag/lld_mean, mean:diag/lld_lazy_frac")
    if derived:
        df = add_history_metrics(df, derived, source)
    cols = list(dict.fromkeys(cols or []))
    keys = [k for k in swept if k not in cols] if rows is None else list(dict.fromkeys(rows))
    for k in keys + cols:
        if k not in swept:
            raise ValueError(f"unknown row/column key {k!r}; available swept keys: {', '.join(swept) or '(none)'}")
    if set(keys) & set(cols):
        raise ValueError(f"keys both in rows and cols: {', '.join(sorted(set(keys) & set(cols)))}")
    summary = summarize(df, metrics, keys + cols, baseline=baseline, level=level)
    return Table(summary, layout_table(summary, metrics, keys, cols, digits))


def render_table(sweep_dir, metrics=None, rows=None, cols=None, baseline=None, fmt: str = "md",
                 digits: int = 3, source=None) -> str:
    """Load a sweep (a dir or ``wandb://ENTITY/PROJECT/SWEEP_ID``) and render its ablation table;
    bad keys raise ValueError early."""
    if source is None:
        source = open_source(str(sweep_dir))
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    return build_table(source, metrics, rows, cols, baseline, digits=digits).render(fmt, digits)


# ---------------------------------------------------------------- CLI
EXAMPLES = [
    ("grpolab table outputs/sweeps/kl --rows algorithm.kl.coef --metrics final_eval_accuracy", "one metric by kl"),
    ("grpolab table outputs/sweeps/lopti --cols variant --format all", "mean ± 95% CI, Δ vs baseline (Welch), "
                                                                       "md/tex/csv"),
    ("grpolab table kl --format latex --digits 2 --baseline algorithm.kl.coef=0.0", "sweep id kl, LaTeX"),
    ("grpolab table --root outputs kl_search --metrics final_eval_accuracy", "a tune study's runs"),
    ("grpolab table wandb://ENTITY/PROJECT/kl", "the W&B runs of group kl"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpolab table", description="Ablation table of a sweep: per cell, mean ± "
                                     "95%% CI over seeds, Δ vs a baseline cell with Welch's test.",
                                     epilog=epilog(EXAMPLES), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_table_args(parser)
    parser.add_argument("--format", default="md", choices=[*FORMATS, "all"],
                        help="output format; 'all' writes md, tex and csv next to --out (default <sweep>/table; "
                             "./<sweep id>/table for W&B)")
    parser.add_argument("--out", default=None,
                        help="also write the table to this file (with --format all: a path without suffix)")
    return parser


def main(argv=None) -> int:
    """CLI: ``grpolab table SWEEP_DIR|wandb://ENTITY/PROJECT/SWEEP_ID [--metrics a,b] [--rows k1]
    [--cols k2] [--baseline k=v] [--format md|latex|csv|html|all] [--out FILE]``."""
    args = build_parser().parse_args(argv)
    try:
        source = resolve_source(args.sweep_dir, args.root)
        stem = Path(args.out) if args.out else default_out_dir(source) / "table"
        if args.dry_run:
            if getattr(source, "root", None) is not None:  # the keys checked against the records
                build_table(source, args.metrics, args.rows, args.cols, parse_baseline(args.baseline),
                            digits=args.digits)
            writes = [stem.with_name(stem.name + SUFFIX[f]) for f in ("md", "latex", "csv")] \
                if args.format == "all" else [args.out] if args.out else []
            print(dry_run_line("table", source, writes))
            return 0
        table = build_table(source, args.metrics, args.rows, args.cols, parse_baseline(args.baseline),
                            digits=args.digits)
        if args.format == "all":
            stem.parent.mkdir(parents=True, exist_ok=True)
            for fmt in ("md", "latex", "csv"):
                text = table.render(fmt, args.digits)
                stem.with_name(stem.name + SUFFIX[fmt]).write_text(text)
            print(table.render("md", args.digits), end="")
            return 0
        text = table.render(args.format, args.digits)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
