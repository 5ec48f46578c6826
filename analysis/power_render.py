"""Rendering of ``analysis.power``'s plan: one Markdown line (or CSV row) per comparison, and the
caption that states the planning assumptions."""

from __future__ import annotations

import math

from analysis import render
from analysis.power import MAX_SEEDS, NA, TEST_NAME, PlanRow, PowerTable, sd_interval, sign_flip_min_seeds


def _num(x: float, digits: int, sign: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "∞" if x == math.inf else NA
    return f"{x:{sign}.{digits}f}"


def _seeds(n: int | None) -> str:
    return NA if n is None else f"> {MAX_SEEDS}" if n > MAX_SEEDS else str(n)


def _row_texts(row: PlanRow, keys, digits: int) -> dict:
    """The Markdown cells of one row."""
    p = row.plan
    test = TEST_NAME.get(row.test, row.test) + (f" ({row.pairing})" if row.paired else "")
    given = " (--sd)" if row.sd_given else ""
    if row.paired:
        n, sd = str(row.n), _num(row.sd, digits) + given
    else:
        n = f"{row.n} / {row.n_base}"
        sd = (_num(row.sd, digits) if row.sd_given else f"{_num(row.sd, digits)} / {_num(row.sd_base, digits)}") + given
    return {"cell": ", ".join(f"{k}={render.fmt_key(row.cell[k], digits)}" for k in keys), "metric": row.metric,
            "test": test, "n": n, "sd": sd, "observed": _num(row.delta_observed, digits, "+"),
            "mde": _num(p.mde, digits), "delta": _num(row.delta, digits) if row.delta is not None else NA,
            "power": _num(p.power, 2), "seeds": _seeds(p.seeds), "note": p.missing or p.note}


def _model_line(table: PowerTable) -> str:
    tests = {r.test for r in table.rows}
    parts = []
    if tests - {"welch"}:
        parts.append("paired rows: the one-sample t on the per-seed differences (statsmodels TTestPower)")
    if "welch" in tests:
        parts.append("Welch rows: the two-sample t with the pooled SD, n and SD shown as cell / baseline "
                     "(statsmodels TTestIndPower)")
    if "sign-flip" in tests:
        parts.append(f"the sign flip as the paired t, but never below the {sign_flip_min_seeds(table.alpha_planning)}"
                     " seeds its smallest p = 2/2^n needs to pass α′")
    return "Model: " + "; ".join(parts) + "." if parts else "Model: no comparison to plan."


def caption(table: PowerTable, digits: int = 3) -> list[str]:
    """The planning assumptions, as lines under the table."""
    base = ", ".join(f"{k}={render.fmt_key(v, digits)}" for k, v in table.baseline.items())
    pct = round(100 * table.power)
    m, corr = table.comparisons, table.correction
    if corr == "none" or m <= 1:
        level = f"α = {table.alpha:g} two-sided" + (" (no multiplicity correction)" if corr == "none" else "")
    else:
        name = "Holm" if corr == "holm" else "Benjamini–Hochberg"
        level = (f"α = {table.alpha:g} two-sided at the Bonferroni level α′ = α/m = {table.alpha:g}/{m} = "
                 f"{table.alpha_planning:.2g} over m = {m} comparisons "
                 f"({'--comparisons' if table.comparisons_given else 'those of this table with a spread'}): "
                 f"{name} never rejects "
                 "less than Bonferroni (Holm's first step), so these figures are conservative, most so when "
                 "several cells truly differ")
    lines = [f"Power and seeds vs the baseline cell {base}: {level}.",
             f"MDE: the smallest |Δ| the present seeds detect with {pct}% power; power at n: the chance the "
             f"present seeds detect the planned Δ; seeds: per cell, every cell on the baseline's seeds, for "
             f"{pct}% power at the planned Δ (metric units).",
             _model_line(table)]
    ns = [r.n for r in table.rows if not r.sd_given and r.n >= 2 and not r.plan.missing]
    if ns:
        n = max(set(ns), key=ns.count)
        lo, hi = sd_interval(n)
        lines.append(f"Assumes normal differences, independent across seeds, with the SD estimated from the "
                     f"present seeds, itself uncertain: from n = {n} seeds the true SD is {lo:.2f}–{hi:.2f}× the "
                     f"estimate (95% χ² interval, n − 1 dof), and the seeds needed scale with SD², so read them "
                     "as a guide; plan with a pilot SD (--sd) or more seeds.")
    if any(r.sd_given for r in table.rows):
        lines.append("SD marked (--sd): given, not estimated (assumes normal differences, independent across seeds).")
    return lines


COLUMNS = [("cell", "cell"), ("metric", "metric"), ("test", "test (pairing)"), ("n", "n"),
           ("sd", "SD of differences"), ("observed", "Δ observed"), ("mde", "MDE"), ("delta", "Δ planned"),
           ("power", "power at n"), ("seeds", "seeds needed"), ("note", "note")]


def markdown(table: PowerTable, digits: int = 3) -> str:
    """GitHub Markdown: one line per comparison, then the caption. Welch rows show n and SD as
    ``cell / baseline``; planned-Δ columns are left out when no Δ was given."""
    texts = [_row_texts(r, table.keys, digits) for r in table.rows]
    planned = any(r.delta is not None for r in table.rows)
    cols = [(k, h) for k, h in COLUMNS if (planned or k not in ("delta", "power", "seeds"))
            and (k != "note" or any(t["note"] for t in texts))]
    cols = [(k, h.replace("MDE", f"MDE ({round(100 * table.power)}%)")) for k, h in cols]
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "|".join("---" if k in ("cell", "metric", "test",
                                                                                         "note") else "---:"
                                                                       for k, _ in cols) + "|"]
    out += ["| " + " | ".join(t[k].replace("|", "\\|") for k, _ in cols) + " |" for t in texts]
    if not table.rows:
        out.append("| " + " | ".join(["no comparison with the baseline"] + [""] * (len(cols) - 1)) + " |")
    notes = caption(table, digits)
    if not planned:
        notes.append("Give --delta (metric units) for the power at n and the seeds needed.")
    return "\n".join(out) + "\n\n" + "\n".join(notes) + "\n"


def csv(table: PowerTable) -> str:
    """Tidy CSV: one line per comparison with the unformatted figures."""
    import pandas as pd

    recs = [{**r.cell, "metric": r.metric, "test": r.test, "pairing": r.pairing, "n": r.n, "n_baseline": r.n_base,
             "sd": r.sd, "sd_baseline": r.sd_base, "sd_given": r.sd_given, "delta_observed": r.delta_observed,
             "mde": r.plan.mde, "delta": r.delta, "power": r.plan.power, "seeds_needed": r.plan.seeds,
             "target_power": table.power, "alpha": table.alpha, "alpha_planning": table.alpha_planning,
             "comparisons": table.comparisons, "correction": table.correction,
             "note": r.plan.missing or r.plan.note} for r in table.rows]
    return pd.DataFrame(recs, columns=[*table.keys, "metric", "test", "pairing", "n", "n_baseline", "sd",
                                       "sd_baseline", "sd_given", "delta_observed", "mde", "delta", "power",
                                       "seeds_needed", "target_power", "alpha", "alpha_planning", "comparisons",
                                       "correction", "note"]).to_csv(index=False)
