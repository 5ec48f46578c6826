"""Ablation tables: per sweep cell, mean ± 95% CI over seeds, Δ vs a baseline cell (paired by seed
and prompt, with its interval and a test corrected over the table: ``analysis.summary``), significant
improvements in bold; as Markdown, LaTeX (booktabs), CSV or HTML.

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

from analysis import render, sequential
from analysis.cells import same_value
from analysis.cli_args import add_table_args, dry_run_line, epilog, parse_baseline
from analysis.history import add_history_metrics, is_history_metric, parse_metric
from analysis.labels import add_label_arg, check_labels, parse_labels
from analysis.labels import name as shown_name
from analysis.latex_table import latex_table
from analysis.multiplicity import CORRECTIONS
from analysis.outcomes import prompt_outcomes
from analysis.paired import TESTS
from analysis.protocol import protocol_notes
from analysis.sources import default_out_dir, open_source, resolve_source, runs_frame
from analysis.stats import LEVEL, significance_mark
from analysis.summary import ALPHA, comparison_note, summarize
from trainer.run_record import Direction, direction

DEFAULT_METRICS = [
    "warmstart_eval_accuracy",
    "final_eval_accuracy",
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


# ---------------------------------------------------------------- layout
@dataclass
class Cell:
    mean: float
    ci: float
    n: int
    delta: float
    p: float  # after the table's multiplicity correction (NaN: no test)
    lo: float = math.nan  # interval of delta
    hi: float = math.nan
    welch: bool = False  # the comparison fell back to Welch (cells share < 2 seeds)
    baseline: bool = False
    best: bool = False  # significantly better than the baseline after the correction
    n_note: str = ""  # shown when the cell's n differs from the table's common n

    @property
    def mark(self) -> str:
        return significance_mark(self.p) + ("†" if self.welch else "")


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
    labels: dict = field(default_factory=dict)  # --label: key or metric → shown name
    constant: dict = field(default_factory=dict)  # swept keys with one value in every cell, moved to the notes

    def name(self, key: str) -> str:
        """The shown name of a swept key (its label or itself) or a metric (its label or readable name)."""
        return shown_name(key, self.labels, metric=key not in self.row_keys + self.col_keys + list(self.constant))

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
            kv = ", ".join(f"{self.name(k)}={render.fmt_key(v, kd)}" for k, v in zip(self.col_keys, vals))
            shown = self.name(metric)
            labels.append(kv if joiner is None else (f"{shown}{joiner}{kv}" if kv else shown))
        return labels

    def metric_spans(self):
        """[(shown metric name, number of data columns it spans)]."""
        spans: list[list] = []
        for metric, _ in self.columns:
            if spans and spans[-1][0] == metric:
                spans[-1][1] += 1
            else:
                spans.append([metric, 1])
        return [(self.name(m), w) for m, w in spans]


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
    return (f"Bold: significantly better than the baseline after the correction ({which})"
            + (f"; none marked for {', '.join(unmarked)}." if unmarked else "."))


def constant_keys(summary: pd.DataFrame, keys) -> dict:
    """{key: value} of the ``keys`` that take one value in every cell of ``summary`` (a table of
    at least two cells): they say nothing per row, so the table states them once, in its notes."""
    if len(summary) < 2:
        return {}
    out = {}
    for k in keys:
        shown = {render.fmt_key(v) for v in summary[k]}
        if len(shown) == 1:
            out[k] = summary[k].iloc[0]
    return out


def layout_table(summary: pd.DataFrame, metrics, rows, cols=(), digits: int = 3, labels: dict | None = None,
                 keep_constant: bool = True) -> TableLayout:
    """Lay ``summary`` (grouped by ``rows + cols``) out as rows × (metric, col values) cells; the
    notes show swept values rounded to ``digits`` as the table does. ``labels``: shown names of
    keys and metrics (``analysis.labels``); ``keep_constant=False`` moves a key with one value in
    every cell from the table to the notes ("All cells: key=value")."""
    metrics, rows, cols = list(metrics), list(rows), list(cols)
    constant = {} if keep_constant else constant_keys(summary, rows + cols)
    rows, cols = [k for k in rows if k not in constant], [k for k in cols if k not in constant]
    row_vals = list(dict.fromkeys(tuple(r) for r in summary[rows].itertuples(index=False, name=None)))
    col_vals = list(dict.fromkeys(tuple(r) for r in summary[cols].itertuples(index=False, name=None)))
    if not rows and len(summary):
        row_vals = [()]
    if not col_vals:  # one data column per metric, even when no cell has completed runs
        col_vals = [()]
    layout = TableLayout(rows, cols, [(m, cv) for m in metrics for cv in col_vals], show_n=not cols,
                         labels=dict(labels or {}), constant=constant)
    base = summary.attrs.get("baseline")
    base_t = tuple(base[k] for k in rows + cols) if base else None  # constant keys dropped alike
    lookup = {}
    for _, r in summary.iterrows():
        key = tuple(r[k] for k in rows + cols)
        lookup[key] = {m: Cell(r[f"{m}/mean"], r[f"{m}/ci"], int(r[f"{m}/n"]), r[f"{m}/delta"], r[f"{m}/p_adj"],
                               r[f"{m}/delta_lo"], r[f"{m}/delta_hi"], welch=r[f"{m}/test"] == "welch",
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
    for j, (metric, _) in enumerate(layout.columns):  # bold: significantly better than the baseline
        sign = {Direction.higher: 1, Direction.lower: -1}.get(better[metric], 0)
        for row in layout.body:
            c = row[1][j]
            if c is not None and sign and c.p < ALPHA and sign * c.delta > 0:
                c.best = True
    level = round(100 * summary.attrs.get("level", LEVEL))
    n_text = "n = completed seeds per cell" if not cols else f"n = {common} seeds per cell unless marked"
    if constant:
        kd = render.distinct_digits([[v] for v in constant.values()], digits)
        layout.notes.append("All cells: " + ", ".join(f"{layout.name(k)}={render.fmt_key(v, kd)}"
                                                      for k, v in constant.items()) + ".")
    layout.notes.append(f"Mean ± {level}% CI half-width over seeds (Student t, n−1 dof); {n_text}.")
    if base:
        shown_base = {layout.name(k): v for k, v in base.items() if k not in constant}
        layout.notes.append(comparison_note(summary, shown_base, digits))
    layout.notes.append(_bold_note({layout.name(m): d for m, d in better.items()}))
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
                         "delta": r[f"{m}/delta"], "delta_low": r[f"{m}/delta_lo"],
                         "delta_high": r[f"{m}/delta_hi"], "test": r[f"{m}/test"], "pairing": r[f"{m}/pairing"],
                         "pairs": r[f"{m}/pairs"], "prompts": r[f"{m}/prompts"], "p": r[f"{m}/p"],
                         "p_adj": r[f"{m}/p_adj"], "p_welch": r[f"{m}/p_welch"],
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
        return {"md": render.markdown, "latex": latex_table, "html": render.html_table}[fmt](self.layout, digits)


def build_table(source, metrics=None, rows=None, cols=None, baseline=None, level: float = LEVEL,
                df: pd.DataFrame | None = None, test: str = "auto", correction: str = "holm",
                digits: int = 3, labels: dict | None = None, keep_constant: bool = False) -> Table:
    """Validate the keys against the records, derive history metrics, read the per-prompt eval
    outcomes of the runs (``analysis.outcomes``), summarize and lay out (the notes' values to
    ``digits``, as ``Table.render`` shows the table's). ``labels``: {swept key or metric: shown
    name}; a swept key with one value in every cell goes to the notes unless ``keep_constant``."""
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
    check_labels(labels or {}, [*swept, *metrics])
    prompts = prompt_outcomes(source, df, metrics) if baseline is not False else {}
    summary = summarize(df, metrics, keys + cols, baseline=baseline, level=level, test=test, correction=correction,
                        prompts=prompts)
    summary = sequential.for_source(source, summary, df, test, correction, prompts)
    layout = layout_table(summary, metrics, keys, cols, digits, labels, keep_constant)
    layout.notes.extend(protocol_notes(source, df, metrics, keys + cols, labels))
    return Table(summary, layout)


def render_table(sweep_dir, metrics=None, rows=None, cols=None, baseline=None, fmt: str = "md",
                 digits: int = 3, source=None, test: str = "auto", correction: str = "holm",
                 labels: dict | None = None, keep_constant: bool = False) -> str:
    """Load a sweep (a dir or ``wandb://ENTITY/PROJECT/SWEEP_ID``) and render its ablation table;
    bad keys raise ValueError early."""
    if source is None:
        source = open_source(str(sweep_dir))
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    return build_table(source, metrics, rows, cols, baseline, test=test, correction=correction,
                       digits=digits, labels=labels, keep_constant=keep_constant).render(fmt, digits)


# ---------------------------------------------------------------- CLI
EXAMPLES = [
    ("grpolab table outputs/sweeps/kl --rows algorithm.kl.coef --metrics final_eval_accuracy", "one metric by kl"),
    ("grpolab table outputs/sweeps/lopti --cols variant --format all", "mean ± 95% CI, paired Δ vs baseline, "
                                                                       "md/tex/csv"),
    ("grpolab table kl --format latex --digits 2 --baseline algorithm.kl.coef=0.0", "sweep id kl, LaTeX"),
    ("grpolab table --root outputs kl_search --metrics final_eval_accuracy", "a tune study's runs"),
    ("grpolab table wandb://ENTITY/PROJECT/kl", "the W&B runs of group kl"),
    ("grpolab table kl --format latex --label algorithm.kl.coef=β --label final_eval_accuracy=Accuracy",
     "renamed in headers and notes"),
]


def add_stats_args(parser: argparse.ArgumentParser) -> None:
    """How Δ is tested and the table's comparisons corrected (``analysis.paired``, ``analysis.multiplicity``)."""
    parser.add_argument("--test", default="auto", choices=TESTS,
                        help="test of Δ vs the baseline: auto (paired t when the cells share >= 2 seeds, else "
                             "Welch), paired-t, sign-flip (exact permutation over seeds), welch (unpaired)")
    parser.add_argument("--correction", default="holm", choices=CORRECTIONS,
                        help="multiplicity correction over every comparison of the table: holm (family-wise "
                             "error, default), bh (Benjamini-Hochberg, false discovery rate), none")


def add_layout_args(parser: argparse.ArgumentParser) -> None:
    """``--label`` and ``--keep-constant``, shared by table and report."""
    add_label_arg(parser)
    parser.add_argument("--keep-constant", action="store_true",
                        help="keep a swept key that has one value in every cell as a column (default: the "
                             "notes say 'All cells: key=value' instead)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpolab table", description="Ablation table of a sweep: per cell, mean ± "
                                     "95%% CI over seeds, Δ vs a baseline cell paired by seed and prompt, "
                                     "with its bootstrap CI and a test corrected for the table's comparisons.",
                                     epilog=epilog(EXAMPLES), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_table_args(parser)
    add_stats_args(parser)
    add_layout_args(parser)
    parser.add_argument("--format", default="md", choices=[*FORMATS, "all"],
                        help="output format; 'all' writes md, tex and csv next to --out (default <sweep>/tables/table, "
                             "so the sweep's own table.md stays; "
                             "./<sweep id>/table for W&B)")
    parser.add_argument("--out", default=None,
                        help="also write the table to this file (with --format all: a path without suffix)")
    return parser


def main(argv=None) -> int:
    """CLI: ``grpolab table SWEEP_DIR|wandb://ENTITY/PROJECT/SWEEP_ID [--metrics a,b] [--rows k1]
    [--cols k2] [--baseline k=v] [--format md|latex|csv|html|all] [--out FILE]``."""
    args = build_parser().parse_args(argv)
    try:
        layout = {"labels": parse_labels(args.label), "keep_constant": args.keep_constant}
        source = resolve_source(args.sweep_dir, args.root)
        # a sweep dir's own table.md is the sweep command's product: --format all never overwrites it
        own = getattr(source, "root", None) is not None
        stem = Path(args.out) if args.out else default_out_dir(source) / ("tables" if own else ".") / "table"
        if args.dry_run:
            if own:  # the keys checked against the records
                build_table(source, args.metrics, args.rows, args.cols, parse_baseline(args.baseline),
                            test=args.test, correction=args.correction, digits=args.digits, **layout)
            writes = [stem.with_name(stem.name + SUFFIX[f]) for f in ("md", "latex", "csv")] \
                if args.format == "all" else [args.out] if args.out else []
            print(dry_run_line("table", source, writes))
            return 0
        table = build_table(source, args.metrics, args.rows, args.cols, parse_baseline(args.baseline),
                            test=args.test, correction=args.correction, digits=args.digits, **layout)
        if args.format == "all":
            stem.parent.mkdir(parents=True, exist_ok=True)
            written = []
            for fmt in ("md", "latex", "csv"):
                written.append(stem.with_name(stem.name + SUFFIX[fmt]))
                written[-1].write_text(table.render(fmt, args.digits))
            print(table.render("md", args.digits), end="")
            print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
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
