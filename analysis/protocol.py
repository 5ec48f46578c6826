"""The eval protocol a table states: which metrics select on the eval set, and how much of the
seed-to-seed spread of the final eval accuracy is eval sampling rather than training.

**Selection.** ``final_*`` metrics are the last eval of a run (the default). ``best_*`` and ``max:`` /
``min:`` of an ``eval/`` key pick the run's best eval step on the same prompts they score, so they
are optimistic (upward-biased by the maximum over noisy evals); the table says so under itself.
``auc:eval/accuracy`` (``analysis.history``) is the area under the eval curve, a selection-free
summary of the whole run.

**Noise split.** A run's ``final_eval_accuracy`` is ``acc = mean_q c_q / n`` over the held-out
prompts q, with ``c_q`` correct of ``n = rollout.eval_n`` samples. Across the seeds of one cell its
variance ``V_total`` (sample variance, n − 1) is training randomness plus eval sampling. The
sampling part of one run is ``Var(acc | run) = mean_q p_q (1 − p_q) / n / Q``, estimated without
bias by ``V_eval = sum_q c_q (n − c_q) / (n² (n − 1)) / Q²`` (the binomial's unbiased variance
estimate); averaged over the cell's runs. ``V_seed = max(V_total − V_eval, 0)``. Pooled over the
cells (means of each), the note gives the eval share ``V_eval / V_total``: more eval samples
(``rollout.eval_n``) shrink that part, only more seeds the rest. Greedy evals (eval temperature 0)
have no sampling part; with one sampled draw per prompt (``eval_n = 1``) it cannot be estimated.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.history import is_history_metric, parse_metric
from analysis.labels import name
from trainer.run_record import RunStatus

NOISE_METRIC = "final_eval_accuracy"


def selects_on_eval(metric: str) -> bool:
    """Whether ``metric`` picks the run's best eval step (and so is optimistic)."""
    if metric.startswith("best_"):
        return True
    if is_history_metric(metric):
        agg, key = parse_metric(metric)
        return agg in ("max", "min") and key.startswith("eval/")
    return False


def selection_note(metrics, labels: dict | None = None) -> str:
    """The metrics are named as the table shows them (``analysis.labels``)."""
    chosen = [name(m, labels) for m in metrics if selects_on_eval(m)]
    if not chosen:
        return ""
    return (f"{', '.join(chosen)}: the best of each run's evals, chosen on the prompts it is scored on, so "
            f"optimistic; {name('final_eval_accuracy', labels)} (the last eval) or auc:eval/accuracy (the area "
            "under the eval curve) do not select.")


def run_eval_variance(correct, eval_n: int) -> float:
    """Unbiased estimate of the eval-sampling variance of one run's mean accuracy (module docstring)."""
    c = np.asarray(correct, dtype=float)
    if eval_n < 2 or not len(c):
        return math.nan
    return float(np.sum(c * (eval_n - c)) / (eval_n**2 * (eval_n - 1)) / len(c) ** 2)


def _greedy(config: dict) -> bool:
    rollout = (config or {}).get("rollout") or {}
    temp = rollout.get("eval_temperature")
    return temp is not None and float(temp) == 0.0


def noise_split(source, df: pd.DataFrame, group_keys) -> dict | None:
    """{"cells", "v_total", "v_eval", "share", "eval_n"} pooled over the cells with ≥ 2 completed runs
    that logged a final eval; {"why": ...} when the split cannot be estimated; None without data."""
    reader = getattr(source, "evals", None)
    if reader is None or "run_dir" not in df.columns:
        return None
    done = df[df["status"] == RunStatus.completed.value]
    totals, evals, eval_ns = [], [], set()
    greedy = False
    for _, runs in done.groupby(list(group_keys), dropna=False, sort=False) if group_keys else [((), done)]:
        accs, vs = [], []
        for run_dir in runs["run_dir"]:
            rows = reader(run_dir)
            if not rows:
                continue
            last = rows[-1]
            run_greedy = _greedy(source.config(run_dir))
            greedy = greedy or run_greedy
            accs.append(float(np.mean(np.asarray(last.correct, dtype=float) / last.eval_n)))
            vs.append(0.0 if run_greedy else run_eval_variance(last.correct, last.eval_n))
            if not run_greedy:
                eval_ns.add(last.eval_n)
        if len(accs) >= 2:
            totals.append(float(np.var(accs, ddof=1)))
            evals.append(float(np.mean(vs)))
    if not totals:
        return None
    if eval_ns and min(eval_ns) < 2:
        return {"why": "eval_n = 1 sampled draw per prompt: the eval part cannot be estimated"}
    v_total, v_eval = float(np.mean(totals)), float(np.mean(evals))
    share = v_eval / v_total if v_total > 0 else math.nan
    return {"cells": len(totals), "v_total": v_total, "v_eval": v_eval, "share": share,
            "eval_n": sorted(eval_ns), "greedy": greedy}


def noise_note(split: dict | None, labels: dict | None = None) -> str:
    if split is None:
        return ""
    shown = name(NOISE_METRIC, labels)
    if "why" in split:
        return f"Noise split of {shown}: not estimated ({split['why']})."
    sd = math.sqrt(split["v_total"])
    if not split["eval_n"]:
        how = "greedy evals: none of it is eval sampling"
    elif math.isnan(split["share"]):
        how = "no spread between seeds"
    else:
        share = min(split["share"], 1.0)
        n = "/".join(str(x) for x in split["eval_n"])
        how = (f"≈ {100 * share:.0f}% of it eval sampling ({n} draws per prompt; more rollout.eval_n shrinks it), "
               f"≈ {100 * (1 - share):.0f}% training randomness (only more seeds shrink it)")
    cells = split["cells"]
    return (f"Noise in {shown}: seed-to-seed SD {sd:.3g} (mean variance over {cells} "
            f"cell{'s' if cells != 1 else ''}); {how}.")


def protocol_notes(source, df: pd.DataFrame, metrics, group_keys, labels: dict | None = None) -> list[str]:
    """The table's protocol notes: optimistic metrics, and the noise split when the final eval accuracy is shown."""
    notes = [selection_note(metrics, labels)]
    if NOISE_METRIC in metrics:
        notes.append(noise_note(noise_split(source, df, group_keys), labels))
    return [n for n in notes if n]
