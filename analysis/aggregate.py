"""Aggregates across tasks: per cell, the IQM, mean and median of a metric over the tasks of a sweep
(the values of one swept key, ``--over``) and the probability of improving on a baseline cell, each
with a stratified bootstrap interval (``analysis.aggregate_stats``, after rliable: Agarwal et al.,
2021, arXiv:2108.13264); the performance profiles are ``analysis.profile_plot``.

Cells are the value combinations of the ``rows`` keys (default: every swept key but ``over``);
swept keys in neither are pooled, their runs counting as more runs of the cell on that task, as in
``analysis.table``. Only completed runs count. A cell needs a run on every task to be aggregated:
one that lacks a task is listed with ``—`` and the missing tasks named, since an aggregate over
fewer tasks would not compare with the others. Tasks may have different numbers of runs: the
bootstrap resamples each task's own runs; the IQM pools runs (a task with more runs weighs more),
the mean and median are of per-task means (each task weighs 1).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import render
from analysis.aggregate_stats import LEVEL, REPS, iqm, mean_of_tasks, median_of_tasks, probability_of_improvement
from analysis.aggregate_stats import interval as bootstrap_interval
from analysis.cells import cell_sort_key, group_value
from analysis.history import add_history_metrics, is_history_metric
from analysis.summary import _resolve_baseline
from analysis.table import metric_direction
from trainer.run_record import Direction, RunStatus

STATS = ("iqm", "mean", "median")
FORMATS = ("md", "csv", "latex")


@dataclass
class TaskScores:
    """A metric's completed-run scores per cell and task: ``cells[cell][i]`` holds the scores of
    ``tasks[i]`` (an empty array where the cell has no completed run of that task)."""

    metric: str
    over: str
    keys: list
    tasks: list
    cells: dict
    plan_first: dict = field(default_factory=dict)
    excluded: dict = field(default_factory=dict)

    def missing(self, cell) -> list:
        return [t for t, s in zip(self.tasks, self.cells[cell]) if not len(s)]


def _refuse_keys(swept, over, rows):
    if over is None:
        raise ValueError(f"--over: missing; give the swept key whose values are the tasks, one of: "
                         f"{', '.join(swept) or '(none)'}")
    if over not in swept:
        raise ValueError(f"--over {over!r}: not a swept key of this sweep; swept keys: {', '.join(swept) or '(none)'}")
    for k in rows:
        if k == over:
            raise ValueError(f"--rows {k}: is the --over key (the tasks aggregated over); rows take the other swept "
                             f"keys: {', '.join(s for s in swept if s != over) or '(none)'}")
        if k not in swept:
            raise ValueError(f"--rows {k!r}: not a swept key; swept keys: {', '.join(swept)}")


def task_scores(df: pd.DataFrame, metric: str, over: str, rows=None, source=None) -> TaskScores:
    """Group the records frame's completed runs of ``metric`` by the ``rows`` keys and the ``over``
    key; ValueError (one line, naming the option) for an unknown key or metric, or fewer than 2 tasks."""
    swept, available = df.attrs["swept_keys"], df.attrs["metric_keys"]
    rows = [k for k in swept if k != over] if rows is None else list(dict.fromkeys(rows))
    _refuse_keys(swept, over, rows)
    if metric not in available:
        if not is_history_metric(metric):
            raise ValueError(f"--metric {metric!r}: unknown; available metrics: {', '.join(available) or '(none)'} "
                             "or history metrics like final_pass@k, mean:diag/lld_mean")
        df = add_history_metrics(df, [metric], source)
    done = df[(df["status"] == RunStatus.completed.value) & pd.to_numeric(df[metric], errors="coerce").notna()]
    order = df.attrs.get("value_order", {})
    by_task = cell_sort_key([over], order)
    tasks = sorted({group_value(v) for v in done[over]}, key=lambda v: by_task((v,)))
    if len(tasks) < 2:
        have = f" ({render.fmt_key(tasks[0])})" if tasks else ""
        raise ValueError(f"--over {over}: aggregates across tasks need ≥ 2 values; {over} has {len(tasks)} with "
                         f"completed runs of {metric}{have}")
    by_cell: dict[tuple, dict] = {}
    for value, cell, task in zip(done[metric], done[rows].itertuples(index=False, name=None), done[over]):
        by_cell.setdefault(tuple(group_value(v) for v in cell), {}).setdefault(group_value(task), []).append(
            float(value))
    cells = {c: [np.array(by_cell[c].get(t, []), dtype=float) for t in tasks]
             for c in sorted(by_cell, key=cell_sort_key(rows, order))}
    not_done = df["status"] != RunStatus.completed.value
    excluded = Counter(df.loc[not_done, "status"].fillna(RunStatus.missing.value))
    return TaskScores(metric, over, rows, tasks, cells, df.attrs.get("plan_first", {}), dict(sorted(excluded.items())))


def summarize_tasks(scores: TaskScores, baseline=None, reps: int = REPS, level: float = LEVEL) -> pd.DataFrame:
    """One row per cell: the rows keys, ``iqm``/``mean``/``median`` and their ``_lo``/``_hi``, ``poi``
    (P(cell improves on the baseline): P(X > Y), or P(X < Y) for a lower-is-better metric) with
    ``poi_lo``/``poi_hi``, ``tasks`` (with runs), ``runs``, ``runs_per_task``, ``missing`` (tasks
    without a run), ``baseline``. ``baseline``: {key: value}, None (the plan's first cell) or False."""
    complete = [c for c, parts in scores.cells.items() if all(len(p) for p in parts)]
    base = _resolve_baseline(complete, scores.keys, baseline, scores.plan_first) if complete else None
    sign = -1.0 if metric_direction(scores.metric) == Direction.lower else 1.0

    def stats(parts):
        return np.stack([iqm(parts), mean_of_tasks(parts), median_of_tasks(parts)], axis=-1)

    rows = []
    for cell, parts in scores.cells.items():
        row = dict(zip(scores.keys, cell))
        row.update({f"{s}{end}": math.nan for s in (*STATS, "poi") for end in ("", "_lo", "_hi")})
        if cell in complete:
            point, lo, hi = bootstrap_interval(stats, parts, reps=reps, level=level)
            for i, s in enumerate(STATS):
                row[s], row[f"{s}_lo"], row[f"{s}_hi"] = float(point[i]), float(lo[i]), float(hi[i])
            if base is not None and cell != base:
                signed = [[sign * p for p in parts], [sign * p for p in scores.cells[base]]]
                row["poi"], row["poi_lo"], row["poi_hi"] = map(float, bootstrap_interval(
                    probability_of_improvement, *signed, reps=reps, level=level))
        row.update(tasks=sum(1 for p in parts if len(p)), runs=sum(len(p) for p in parts),
                   runs_per_task=",".join(str(len(p)) for p in parts),
                   missing=",".join(render.fmt_key(t) for t in scores.missing(cell)), baseline=cell == base)
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update(metric=scores.metric, over=scores.over, tasks=scores.tasks, keys=scores.keys, reps=reps,
                     level=level, baseline=dict(zip(scores.keys, base)) if base is not None else None,
                     lower_better=sign < 0, excluded=scores.excluded)
    return out


# ---------------------------------------------------------------- rendering
def _interval(row, stat, digits) -> str:
    v, lo, hi = row[stat], row[f"{stat}_lo"], row[f"{stat}_hi"]
    if not math.isfinite(v):
        return render.NA
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _header(summary) -> list[str]:
    lvl = round(100 * summary.attrs["level"])
    poi = ["P(< baseline)" if summary.attrs["lower_better"] else "P(> baseline)"] if summary.attrs["baseline"] else []
    return [*summary.attrs["keys"], *(f"{h} [{lvl}% CI]" for h in ("IQM", "mean", "median", *poi)), "tasks", "runs"]


def _body(summary, digits) -> list[list[str]]:
    keys = summary.attrs["keys"]
    kd = render.distinct_digits([list(summary[k]) for k in keys], digits)
    out = []
    for _, r in summary.iterrows():
        poi = [("baseline" if r["baseline"] else _interval(r, "poi", digits))] if summary.attrs["baseline"] else []
        out.append([render.fmt_key(r[k], kd) for k in keys] + [_interval(r, s, digits) for s in STATS]
                   + poi + [str(r["tasks"]), str(r["runs"])])
    return out


def notes(summary, digits: int = 3) -> list[str]:
    """What the numbers are, which runs they rest on, and what was left out."""
    a = summary.attrs
    tasks = ", ".join(render.fmt_key(t, digits) for t in a["tasks"])
    lvl = round(100 * a["level"])
    out = [f"{a['metric']} across {a['over']} = {tasks} ({len(a['tasks'])} tasks), completed runs only. IQM: mean "
           "of the middle 50% of all runs pooled over tasks; mean, median: of the per-task means."]
    if a["baseline"]:
        desc = ", ".join(f"{k}={render.fmt_key(v, digits)}" for k, v in a["baseline"].items())
        better = "below" if a["lower_better"] else "above"
        out.append(f"P({'<' if a['lower_better'] else '>'} baseline): probability that a run of the cell scores "
                   f"{better} a run of the baseline cell {desc} on the same task (ties count ½), averaged over tasks.")
    out.append(f"[lo, hi]: {lvl}% percentile intervals over {a['reps']} stratified bootstrap resamples (each task's "
               "runs resampled with replacement, tasks fixed); Agarwal et al., 2021, arXiv:2108.13264.")
    aggregated = summary[summary["missing"] == ""]
    if aggregated["runs_per_task"].map(lambda s: len(set(s.split(",")))).gt(1).any():
        out.append("Runs per task differ in some cells: the IQM weighs each run, the mean and median each task.")
    for _, r in summary[summary["missing"] != ""].iterrows():
        cell = ", ".join(f"{k}={render.fmt_key(r[k], digits)}" for k in a["keys"]) or "all runs"
        out.append(f"{cell}: no completed run on {a['over']} = {r['missing']}; not aggregated.")
    total = sum(a["excluded"].values())
    if total:
        detail = ", ".join(f"{s}: {c}" for s, c in a["excluded"].items())
        out.append(f"{total} run{'' if total == 1 else 's'} not completed ({detail}) and excluded.")
    return out


def render_summary(summary: pd.DataFrame, fmt: str = "md", digits: int = 3) -> str:
    """The aggregate table as GitHub Markdown, booktabs LaTeX (notes as ``%`` comments) or tidy CSV."""
    if fmt == "csv":
        cols = [c for c in summary.columns if c != "baseline"] + ["baseline"]
        return summary[cols].assign(metric=summary.attrs["metric"], over=summary.attrs["over"]).to_csv(index=False)
    head, body = _header(summary), _body(summary, digits)
    nk = len(summary.attrs["keys"])
    if fmt == "latex":
        tex = render.tex_escape
        lines = [f"% {tex(n)}" for n in notes(summary, digits)]
        lines += [f"\\begin{{tabular}}{{{'l' * nk}{'r' * (len(head) - nk)}}}", "\\toprule",
                  " & ".join(tex(h) for h in head) + " \\\\", "\\midrule"]
        lines += [" & ".join(tex(c) for c in row) + " \\\\" for row in body]
        return "\n".join([*lines, "\\bottomrule", "\\end{tabular}"]) + "\n"
    def esc(text):
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "|".join(["---"] * nk + ["---:"] * (len(head) - nk))
             + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join([*lines, "", " ".join(notes(summary, digits))]) + "\n"

