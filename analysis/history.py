"""Metrics derived from per-step histories, and learning curves in long form.

A table metric is either a numeric summary key (``final_eval_accuracy``) or derived from the
history frame (``source.history``):

    ``<agg>:<key>``   agg ∈ last, max, min, mean over the run's logged values of ``key``
                      (``mean:diag/lld_mean``, ``max:train/reward``), or auc: the area under
                      the curve over the logged steps (trapezoid), divided by the step span, so
                      in the key's units (``auc:eval/accuracy``: the mean height of the eval curve)
    ``<key>``         a history key alone (any name with a ``/``) means ``last:<key>``
    ``final_pass@k``  = ``last:eval/pass@k``;  ``best_pass@k`` = ``max:eval/pass@k``

``pass@k`` in a key matches the logged ``eval/pass@<k>`` whatever k (= ``rollout.eval_n``);
the trainer logs the unbiased estimator (Chen et al. 2021, Eq. 1), so it is averaged as is.
Reading histories costs one ``metrics.jsonl`` parse per run, so it only happens for the
derived metrics a table actually asks for.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from trainer.run_record import RunStatus

AGGS = ("last", "max", "min", "mean", "auc")
ALIASES = {"final_pass@k": "last:eval/pass@k", "best_pass@k": "max:eval/pass@k"}
_PASS_K = re.compile(r"pass@k$")


def is_history_metric(name: str) -> bool:
    return name in ALIASES or "/" in name or ":" in name


def parse_metric(name: str) -> tuple[str, str]:
    """(agg, key) of a derived metric name; ValueError naming the valid forms."""
    spec = ALIASES.get(name, name)
    agg, sep, key = spec.partition(":")
    if not sep:
        agg, key = "last", spec
    if agg not in AGGS or not key:
        raise ValueError(f"metric {name!r}: expected <agg>:<key> with agg one of {', '.join(AGGS)}, "
                         f"a history key like 'diag/lld_mean', or one of {', '.join(ALIASES)}")
    return agg, key


def resolve_key(key: str, columns) -> str | None:
    """The history column ``key`` names (``pass@k`` matches ``pass@<int>``), or None."""
    if key in columns:
        return key
    if _PASS_K.search(key):
        pattern = re.compile(re.escape(key[:-1]) + r"\d+$")
        return next((c for c in columns if pattern.match(str(c))), None)
    return None


def dedupe_steps(hist: pd.DataFrame) -> pd.DataFrame:
    """Keep the last logged row of each step (a resumed run repeats the steps after its checkpoint)."""
    if "step" not in hist.columns:
        return hist
    return hist.drop_duplicates("step", keep="last").sort_values("step", kind="stable")


def aggregate(hist: pd.DataFrame, agg: str, key: str) -> float:
    col = resolve_key(key, hist.columns)
    if col is None:
        return math.nan
    rows = dedupe_steps(hist)
    vals = pd.to_numeric(rows[col], errors="coerce")
    keep = vals.notna().to_numpy()
    vals = vals.to_numpy(dtype=float)[keep]
    if not len(vals):
        return math.nan
    if agg == "auc":
        steps = (rows["step"].to_numpy(dtype=float)[keep] if "step" in rows.columns
                 else np.arange(len(vals), dtype=float))
        span = steps[-1] - steps[0]
        return float(vals[0]) if span <= 0 else float(np.trapezoid(vals, steps) / span)
    return float({"last": lambda v: v[-1], "max": np.max, "min": np.min, "mean": np.mean}[agg](vals))


def add_history_metrics(df: pd.DataFrame, names, source) -> pd.DataFrame:
    """A copy of the records frame with one column per derived metric in ``names``
    (computed for completed runs only; NaN elsewhere), appended to ``attrs["metric_keys"]``."""
    names = [n for n in dict.fromkeys(names) if n not in df.columns]
    if not names:
        return df
    specs = {n: parse_metric(n) for n in names}
    out = df.copy()
    values = {n: [math.nan] * len(df) for n in names}
    for i, (run_dir, status) in enumerate(zip(df["run_dir"], df["status"])):
        if status != RunStatus.completed.value:
            continue
        hist = source.history(run_dir)
        for n, (agg, key) in specs.items():
            values[n][i] = aggregate(hist, agg, key)
    for n in names:
        out[n] = values[n]
    out.attrs = {**df.attrs, "metric_keys": list(df.attrs.get("metric_keys", [])) + names}
    return out


def load_curves(df: pd.DataFrame, source, keys, group_keys) -> pd.DataFrame:
    """Long frame of completed runs' histories: ``run_dir, seed, *group_keys, step, metric, value``,
    one row per logged (finite) value of each key in ``keys`` (``pass@k`` resolved per run)."""
    keys = list(keys)
    cols = ["run_dir", "seed", *group_keys, "step", "metric", "value"]
    steps, values, metric_idx, run_idx = [], [], [], []
    done = df[df["status"] == RunStatus.completed.value].reset_index(drop=True)
    for i, run_dir in enumerate(done["run_dir"]):
        hist = dedupe_steps(source.history(run_dir))
        if hist.empty or "step" not in hist.columns:
            continue
        found = [(j, resolve_key(k, hist.columns)) for j, k in enumerate(keys)]
        found = [(j, c) for j, c in found if c is not None]
        if not found:
            continue
        sub = hist[[c for _, c in found]]
        try:
            block = sub.to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError):  # a non-numeric value somewhere: coerce column-wise
            block = sub.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        step = pd.to_numeric(hist["step"], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(block) & np.isfinite(step)[:, None]
        rows, which = np.nonzero(ok)  # row-major: step order within each run
        steps.append(step[rows])
        values.append(block[rows, which])
        metric_idx.append(np.array([found[w][0] for w in which], dtype=int))
        run_idx.append(np.full(len(rows), i))
    if not steps:
        return pd.DataFrame(columns=cols)
    runs = np.concatenate(run_idx)
    out = pd.DataFrame({"run_dir": done["run_dir"].to_numpy()[runs], "seed": done["seed"].to_numpy()[runs]})
    for k in group_keys:
        out[k] = done[k].to_numpy()[runs]
    step = np.concatenate(steps)
    out["step"] = step.astype(int) if np.all(step == np.round(step)) else step
    out["metric"] = pd.Categorical.from_codes(np.concatenate(metric_idx), categories=keys)
    out["value"] = np.concatenate(values)
    out["metric"] = out["metric"].astype(str)
    return out


def history_keys(df: pd.DataFrame, source, limit: int = 8) -> list[str]:
    """Union of history keys over the first ``limit`` completed runs (what can be plotted)."""
    seen: dict[str, None] = {}
    for run_dir in df.loc[df["status"] == RunStatus.completed.value, "run_dir"].head(limit):
        for c in source.history(run_dir).columns:
            seen.setdefault(str(c), None)
    return list(seen)
