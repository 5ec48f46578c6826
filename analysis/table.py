"""Ablation tables: mean ± std over seeds per sweep cell, as GitHub Markdown.

Only completed runs enter the statistics (a failed run's partial accuracy would
bias the mean); the excluded ones are counted under the table so a reader sees
that a cell rests on fewer seeds than planned. Grouping is done by hand rather
than with ``DataFrame.groupby`` because swept values may be NaN (key absent in
some runs) or of mixed types, and the row order must be deterministic and
numeric (``2`` before ``10``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.records import load_records

NA = "—"  # shown for absent swept keys and undefined std
DEFAULT_METRICS = [
    "warmstart_eval_accuracy",
    "final_eval_accuracy",
    "best_eval_accuracy",
    "final_reward",
    "final_response_length",
]


def _key_value(v):
    """Hashable group value; NaN/None become the NA sentinel so they form a group."""
    if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return NA
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    return v.item() if isinstance(v, np.generic) else v


def _sort_key(v):
    """Numbers first (numerically), then strings, then the NA group last."""
    if isinstance(v, (int, float)):
        return (0, float(v), "")
    return (2, 0.0, "") if v == NA else (1, 0.0, str(v))


def summarize(df: pd.DataFrame, metrics, group_keys=None) -> pd.DataFrame:
    """Per-cell mean, sample std (ddof=1) and n of each metric over completed runs.

    Columns: the group keys, ``<metric>/mean``, ``<metric>/std``, ``<metric>/n``
    and ``n_runs``. ``attrs["excluded"]`` maps non-completed statuses to counts.
    """
    keys = list(df.attrs.get("swept_keys", []) if group_keys is None else group_keys)
    metrics = list(metrics)
    absent = [c for c in keys + metrics if c not in df.columns]
    if absent:
        raise ValueError(f"columns not in records: {', '.join(absent)}")
    done = df[df["status"] == "completed"]
    groups: dict[tuple, list] = {}
    for label, values in zip(done.index, done[keys].itertuples(index=False, name=None)):
        groups.setdefault(tuple(_key_value(v) for v in values), []).append(label)
    rows = []
    for cell in sorted(groups, key=lambda t: tuple(_sort_key(v) for v in t)):
        sub = done.loc[groups[cell]]
        row = dict(zip(keys, cell))
        for m in metrics:
            vals = pd.to_numeric(sub[m], errors="coerce").dropna().to_numpy(dtype=float)
            row[f"{m}/mean"] = float(vals.mean()) if len(vals) else math.nan
            row[f"{m}/std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
            row[f"{m}/n"] = int(len(vals))
        row["n_runs"] = len(sub)
        rows.append(row)
    stat_cols = [f"{m}/{s}" for m in metrics for s in ("mean", "std", "n")]
    out = pd.DataFrame(rows, columns=keys + stat_cols + ["n_runs"])
    excluded = Counter(df.loc[df["status"] != "completed", "status"].fillna("missing"))
    out.attrs.update(excluded=dict(sorted(excluded.items())), group_keys=keys, metrics=metrics)
    return out


def _fmt_key(v) -> str:
    if isinstance(v, float):
        v = int(v) if v.is_integer() else v
    return str(v).replace("|", "\\|")


def markdown_table(summary: pd.DataFrame, metrics, group_keys, digits: int = 3) -> str:
    """GitHub Markdown: one row per cell, ``mean ± std`` per metric, then ``n``.

    ``n`` is the smallest per-metric count, i.e. the seeds every number rests on.
    """
    metrics, keys = list(metrics), list(group_keys)
    header = [k.replace("|", "\\|") for k in keys] + metrics + ["n"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(keys) + ["---:"] * (len(metrics) + 1)) + "|",
    ]
    for _, r in summary.iterrows():
        cells = [_fmt_key(r[k]) for k in keys]
        for m in metrics:
            mean, std, n = r[f"{m}/mean"], r[f"{m}/std"], r[f"{m}/n"]
            mean_s = NA if pd.isna(mean) else f"{mean:.{digits}f}"
            std_s = NA if n <= 1 or pd.isna(std) else f"{std:.{digits}f}"
            cells.append(f"{mean_s} ± {std_s}")
        n_cell = min(int(r[f"{m}/n"]) for m in metrics) if metrics else int(r["n_runs"])
        lines.append("| " + " | ".join(cells + [str(n_cell)]) + " |")
    excluded = summary.attrs.get("excluded", {})
    total = sum(excluded.values())
    if total:
        detail = ", ".join(f"{s}: {c}" for s, c in excluded.items())
        plural = "run was" if total == 1 else "runs were"
        lines += ["", f"{total} {plural} not completed ({detail}) and excluded."]
    return "\n".join(lines) + "\n"


def render_table(sweep_dir, metrics=None, rows=None) -> str:
    """Load a sweep and render its ablation table; bad keys raise ValueError early."""
    path = Path(sweep_dir)
    if not path.is_dir():
        raise ValueError(f"sweep dir does not exist: {path}")
    df = load_records(path)
    if df.empty:
        raise ValueError(f"no runs (no meta.json) found under {path}")
    swept, available = df.attrs["swept_keys"], df.attrs["metric_keys"]
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m in available]
    for m in metrics:
        if m not in available:
            raise ValueError(f"unknown metric {m!r}; available metrics: {', '.join(available) or '(none)'}")
    keys = swept if rows is None else list(dict.fromkeys(rows))
    for k in keys:
        if k not in swept:
            raise ValueError(f"unknown row key {k!r}; available swept keys: {', '.join(swept) or '(none)'}")
    return markdown_table(summarize(df, metrics, keys), metrics, keys)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv=None) -> int:
    """CLI: ``grpolab table SWEEP_DIR [--metrics a,b] [--rows k1,k2] [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="grpolab table", description="Ablation table of a sweep.")
    parser.add_argument("sweep_dir")
    parser.add_argument("--metrics", type=_csv, default=None, help="comma-separated summary keys")
    parser.add_argument("--rows", type=_csv, default=None, help="comma-separated swept keys to group by")
    parser.add_argument("--out", default=None, help="also write the Markdown to this file")
    args = parser.parse_args(argv)
    try:
        text = render_table(args.sweep_dir, metrics=args.metrics, rows=args.rows)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
