"""Claims measured on a reproduction's sweeps: a cell against a baseline cell on one metric, through
the ablation table's own statistics (``analysis.table.build_table``: paired Δ within seed and prompt,
its hierarchical bootstrap interval, the paired t). A family of m comparisons gets Bonferroni
intervals (level 1 − α/m), so a verdict's interval already accounts for the others.
"""
from __future__ import annotations

import math

from analysis.stats import LEVEL
from reproduce.claims import across_seeds, judge, missing
from reproduce.verdict import Measurement

METRIC = "final_eval_accuracy"
WARM = "warmstart_eval_accuracy"


def bonferroni(m: int) -> float:
    return 1 - (1 - LEVEL) / max(m, 1)


def comparison_rows(source, key: str, base, metric: str = METRIC, m: int = 1) -> dict:
    """{cell value: summary row} of ``metric`` per value of ``key``, compared with ``key=base``."""
    from analysis.table import build_table

    metrics = [metric, WARM] if metric == METRIC else [metric]  # the warm start beside a final accuracy
    table = build_table(source, metrics=metrics, rows=[key], baseline={key: base}, level=bonferroni(m),
                        keep_constant=True)
    return {str(row[key]): row for _, row in table.summary.iterrows()}


def compare_cells(source, key: str, pairs, quick: bool, metric: str = METRIC, m: int | None = None) -> list:
    """One result per (claim, base value, cell value): Δ(cell − base) of ``metric`` with its interval
    at the Bonferroni level over ``m`` comparisons (default: the pairs given)."""
    m = len(pairs) if m is None else m
    if source is None:
        return [missing(c, "no sweep ran", quick) for c, _, _ in pairs]
    out, tables = [], {}
    for claim, base, cell in pairs:
        try:
            rows = tables.setdefault(base, comparison_rows(source, key, base, metric, m))
        except ValueError as e:
            out.append(missing(claim, f"sweep not readable: {e}", quick))
            continue
        row, b = rows.get(str(cell)), rows.get(str(base))
        if row is None or b is None:
            out.append(missing(claim, f"no completed runs of {key}={cell if row is None else base}", quick))
            continue
        n = int(row[f"{metric}/pairs"]) if row[f"{metric}/pairing"] else 0
        meas = Measurement(float(row[f"{metric}/delta"]), float(row[f"{metric}/delta_lo"]),
                           float(row[f"{metric}/delta_hi"]), n, bonferroni(m))
        base_mean, cell_mean = float(b[f"{metric}/mean"]), float(row[f"{metric}/mean"])
        rel = 100 * (cell_mean / base_mean - 1) if base_mean > 0 else math.nan
        warm = {"warm_start_mean": float(b[f"{WARM}/mean"])} if f"{WARM}/mean" in b else {}
        out.append(judge(claim, meas, quick, metric=metric, base=f"{key}={base}", cell=f"{key}={cell}",
                         base_mean=base_mean, cell_mean=cell_mean, relative_gain_pct=rel, **warm,
                         p=float(row[f"{metric}/p"]), test=row[f"{metric}/test"], pairing=row[f"{metric}/pairing"]))
    return out


def accuracy_results(source, claims, key: str, base, cells, quick: bool, metric: str = METRIC) -> list:
    """Each claim's cell against one baseline, Bonferroni over the claims given."""
    return compare_cells(source, key, [(c, base, cell) for c, cell in zip(claims, cells)], quick, metric)


def per_seed(source, key: str, value, metric: str = METRIC) -> dict:
    """{seed: metric} of the completed runs of ``key=value``."""
    from analysis.sources import runs_frame

    df = runs_frame(source)
    done = df[(df["status"] == "completed") & (df[key].astype(str) == str(value))]
    return {int(s): float(v) for s, v in zip(done["seed"], done[metric]) if v == v}


def gain_difference(claim, big, small, key: str, base, cell, quick: bool, m: int = 1, metric: str = METRIC):
    """Difference in differences over seeds: [cell − base] in sweep ``big`` minus in sweep ``small``,
    paired by seed, with its t interval at the Bonferroni level over ``m``."""
    if big is None or small is None:
        return missing(claim, "a sweep did not run", quick)
    parts = [(per_seed(src, key, base, metric), per_seed(src, key, cell, metric)) for src in (big, small)]
    seeds = sorted(set.intersection(*(set(b) & set(c) for b, c in parts)))
    gains = [[c[s] - b[s] for s in seeds] for b, c in parts]
    did = [g1 - g0 for g1, g0 in zip(*gains)]
    meas = across_seeds(did, bonferroni(m))
    return judge(claim, meas, quick, seeds=seeds, gain_big=across_seeds(gains[0]).effect if seeds else math.nan,
                 gain_small=across_seeds(gains[1]).effect if seeds else math.nan)
