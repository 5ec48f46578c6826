"""Per-cell statistics of a sweep's records (the *summary frame* ``analysis.table`` lays out): mean
and t interval over seeds per cell, and each cell's comparison with the baseline cell
(``analysis.paired``: paired by seed and prompt where possible, Welch otherwise), corrected for
multiplicity over every comparison of the table (``analysis.multiplicity``)."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd

from analysis import render
from analysis.cells import cell_sort_key, group_value, same_value
from analysis.multiplicity import CORRECTIONS, DESCRIPTION, adjust
from analysis.paired import N_BOOT, TESTS, compare
from analysis.stats import LEVEL, mean_ci
from trainer.run_record import RunStatus


def _plural(n, one, many):
    return one if n == 1 else many


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


def summarize(df: pd.DataFrame, metrics, group_keys=None, baseline=None, level: float = LEVEL,
              test: str = "auto", correction: str = "holm", prompts: dict | None = None,
              n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per-cell statistics of each metric over completed runs.

    Columns: the group keys, ``<metric>/mean``, ``/std`` (sample, ddof=1), ``/ci`` (half-width
    of the ``level`` Student-t interval), ``/n``; against the baseline (``analysis.paired.compare``)
    ``/delta`` (within seed and prompt where paired), ``/delta_lo``, ``/delta_hi`` (its interval),
    ``/p`` (the test's two-sided p), ``/p_adj`` (after ``correction`` over every comparison of the
    table), ``/test``, ``/pairing``, ``/pairs``, ``/prompts``, ``/p_welch``, ``/sd_diff`` (SD of the per-seed
    differences a paired test saw; ``analysis.power`` plans seeds from it); and ``n_runs``.
    ``baseline`` is a {key: value} dict (missing keys default to the plan's first run), None for
    that default, or False for no comparison. ``test``: ``auto`` (paired t when cells share ≥ 2
    seeds, else Welch), ``paired-t``, ``sign-flip`` or ``welch``. ``prompts``: per-prompt outcomes
    (``analysis.outcomes.prompt_outcomes``). ``attrs``: ``excluded`` (non-completed status →
    count), ``group_keys``, ``metrics``, ``baseline`` ({key: value} or None), ``level``, ``test``,
    ``correction``, ``n_comparisons``, ``tests_used``, ``pairings_used``, ``n_boot``.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; valid: {', '.join(CORRECTIONS)}")
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
    pair_key = _pair_keys(done, groups)
    values = {c: {m: {pair_key[i]: float(numeric[m].loc[i]) for i in groups[c] if pd.notna(numeric[m].loc[i])}
                  for m in metrics} for c in cells}
    per_prompt = prompts or {}
    rows, family = [], []
    for cell in cells:
        row = dict(zip(keys, cell))
        for m in metrics:
            vals = np.array(list(values[cell][m].values()), dtype=float)
            mean, ci = mean_ci(vals, level)
            row[f"{m}/mean"], row[f"{m}/ci"], row[f"{m}/n"] = mean, ci, int(len(vals))
            row[f"{m}/std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
            row.update({f"{m}/{k}": math.nan for k in ("delta", "delta_lo", "delta_hi", "p", "p_adj", "p_welch",
                                                         "sd_diff")})
            row.update({f"{m}/test": "", f"{m}/pairing": "", f"{m}/pairs": 0, f"{m}/prompts": 0})
            if base is None or cell == base or not len(vals) or not values[base][m]:
                continue
            outcomes = per_prompt.get(m, {})
            cmp = compare(values[cell][m], values[base][m], test, level, n_boot,
                          {pair_key[i]: outcomes[i] for i in groups[cell] if i in outcomes},
                          {pair_key[i]: outcomes[i] for i in groups[base] if i in outcomes})
            row.update({f"{m}/delta": cmp.delta, f"{m}/delta_lo": cmp.lo, f"{m}/delta_hi": cmp.hi,
                        f"{m}/p": cmp.p, f"{m}/p_welch": cmp.p_welch, f"{m}/test": cmp.test,
                        f"{m}/pairing": cmp.pairing, f"{m}/pairs": cmp.n, f"{m}/prompts": cmp.prompts,
                        f"{m}/sd_diff": cmp.sd})
            family.append((len(rows), m))
        row["n_runs"] = len(groups[cell])
        rows.append(row)
    adjusted = adjust([rows[i][f"{m}/p"] for i, m in family], correction)
    for (i, m), p_adj in zip(family, adjusted):
        rows[i][f"{m}/p_adj"] = float(p_adj)
    tested = [(i, m) for (i, m), p in zip(family, adjusted) if p == p]
    stat_cols = [f"{m}/{s}" for m in metrics for s in STAT_COLUMNS]
    out = pd.DataFrame(rows, columns=keys + stat_cols + ["n_runs"])
    not_done = df["status"] != RunStatus.completed.value
    excluded = Counter(df.loc[not_done, "status"].fillna(RunStatus.missing.value))
    out.attrs.update(excluded=dict(sorted(excluded.items())), group_keys=keys, metrics=metrics,
                     baseline=dict(zip(keys, base)) if base is not None else None, level=level,
                     test=test, correction=correction, n_comparisons=len(tested), n_boot=n_boot,
                     tests_used=sorted({rows[i][f"{m}/test"] for i, m in tested}),
                     pairings_used=sorted({rows[i][f"{m}/pairing"] for i, m in tested}))
    return out


STAT_COLUMNS = ("mean", "std", "ci", "n", "delta", "delta_lo", "delta_hi", "p", "p_adj", "p_welch", "test",
                "pairing", "pairs", "prompts", "sd_diff")


def _pair_keys(done: pd.DataFrame, groups: dict) -> dict:
    """Per run, what it pairs on across cells: its seed, and among the runs of a cell with that seed
    (swept keys that are pooled) its rank in plan order, so pooled runs pair value by value."""
    out = {}
    for labels in groups.values():
        seen: Counter = Counter()
        for i in labels:
            seed = done.at[i, "seed"] if "seed" in done.columns else i
            out[i] = (seed, seen[seed])
            seen[seed] += 1
    return out


ALPHA = 0.05  # what * and bold mark, on the corrected p-values
TEST_TEXT = {"paired-t": "paired t-test over seeds", "sign-flip": "sign-flip permutation test over seeds "
             "(exact: all 2^n sign patterns; n ≤ 5 seeds cannot reach p < 0.05)",
             "welch": "Welch's unequal-variance t-test (unpaired)"}


def comparison_note(summary: pd.DataFrame, base: dict, digits: int | None = None) -> str:
    """The caption's account of Δ: what is paired, the interval, the test and the correction (the
    baseline's swept values to ``digits``, as the table shows them)."""
    a = summary.attrs
    desc = ", ".join(f"{k}={render.fmt_key(v, digits)}" for k, v in base.items())
    level = round(100 * a.get("level", LEVEL))
    tests = [t for t in a.get("tests_used", []) if t]
    paired = [t for t in tests if t != "welch"]
    parts = [f"(Δ [lo, hi]): difference vs the baseline cell {desc}"]
    if paired:
        within = "seed and prompt" if "seed×prompt" in a.get("pairings_used", []) else "seed"
        parts.append(f"paired within {within} on the seeds both cells ran, with its {level}% hierarchical "
                     f"bootstrap interval ({a.get('n_boot', N_BOOT)} resamples of seeds, then of prompts within "
                     f"each seed; too narrow below ~5 seeds); test: {TEST_TEXT[paired[0]]}")
    if "welch" in tests:
        parts.append(f"† cells sharing < 2 seeds: difference of means, Welch {level}% interval and "
                     f"{TEST_TEXT['welch']}" if paired else f"difference of means with the Welch {level}% "
                     f"interval; test: {TEST_TEXT['welch']}")
    n, corr = a.get("n_comparisons", 0), a.get("correction", "holm")
    if a.get("sequential"):  # an adaptive sweep's rule (analysis.sequential)
        return "; ".join([*parts, a["sequential"]]) + "."
    parts.append(f"* p < 0.05, ** p < 0.01 two-sided after {DESCRIPTION[corr]} over the {n} "
                 f"{_plural(n, 'comparison', 'comparisons')} of this table" if corr != "none" else
                 "* p < 0.05, ** p < 0.01 two-sided, no multiplicity correction")
    if a.get("sequential_ignored"):
        parts.append("seeds were added in rounds (grpolab sweep --until-resolved), which this correction ignores")
    return "; ".join(parts) + "."
