"""Sections of the HTML report (``analysis.report``) beyond the tables and plots: what each cell
changes in the config relative to the baseline cell, the list of runs, and the captions under
each table and figure.

A cell's config is what its runs' resolved configs (``source.config(run_dir)``) share, with
per-run keys (seed, paths, tracker) left out (``analysis.run_configs``); its difference from the
baseline cell is the keys whose values differ, so a reader sees, e.g., that ``variant=lopti``
also switched ``algorithm.lopti.enabled`` and ``algorithm.lopti.threshold``.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from analysis.cells import group_value
from analysis.plots import cell_label
from analysis.run_configs import cell_config, config_differences
from trainer.run_record import RunStatus

OPEN_UP_TO = 40  # run lists this long are shown open; longer ones start folded

e = html.escape


def _cell_runs(df: pd.DataFrame, keys, completed: bool = True) -> dict:
    """{cell tuple: [run_dir, ...]} grouped as the table groups (``analysis.cells.group_value``)."""
    rows = df[df["status"] == RunStatus.completed.value] if completed else df
    out: dict = {}
    for run_dir, values in zip(rows["run_dir"], rows[list(keys)].itertuples(index=False, name=None)):
        out.setdefault(tuple(group_value(v) for v in values), []).append(run_dir)
    return out


def config_section(source, df: pd.DataFrame, summary: pd.DataFrame, labels: dict | None = None) -> str:
    """Per cell of the table, the config keys whose values differ from the baseline cell's (the
    first cell where the table has no baseline)."""
    keys = summary.attrs["group_keys"]
    cells = [tuple(r) for r in summary[keys].itertuples(index=False, name=None)] if keys else []
    if not cells:
        return ""
    runs = _cell_runs(df, keys)
    base_spec = summary.attrs.get("baseline")
    base = tuple(base_spec[k] for k in keys) if base_spec else cells[0]
    configs = {c: cell_config(source, runs.get(c, [])) for c in cells}
    if not any(configs.values()):
        return '<p class="notes">No resolved configs were found for the runs (config.yaml / run.config).</p>'
    rows = []
    for c in cells:
        name = e(cell_label(keys, c, labels))
        if c == base:
            rows.append(f'<tr><th>{name}</th><td class="cfg"><i>baseline'
                        f"{'' if base_spec else ' (first cell)'}</i></td></tr>")
            continue
        diff = config_differences(configs[c], configs[base])
        shown = "<br>".join(f"<code>{e(k)}</code>: {e(str(b))} → <b>{e(str(v))}</b>" for k, (b, v) in diff.items())
        rows.append(f'<tr><th>{name}</th><td class="cfg">{shown or "<i>no config difference</i>"}</td></tr>')
    return ('<table class="ablation configs"><thead><tr><th>cell</th><th>config keys that differ from the '
            "baseline cell (baseline → cell)</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>")


def _wall(value) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(x):
        return "—"
    return f"{x:.0f} s" if x < 120 else f"{x / 60:.1f} min"


def runs_section(df: pd.DataFrame, root=None) -> str:
    """Every run of the sweep: id, status, wall time, directory (relative to the sweep dir)."""
    rows = []
    for _, r in df.iterrows():
        where = str(r["run_dir"])
        if root is not None:
            try:
                where = str(Path(where).relative_to(root))
            except ValueError:
                pass
        status = str(r.get("status") or RunStatus.missing.value)
        cls = "" if status == RunStatus.completed.value else ' class="notdone"'
        rows.append(f"<tr{cls}><td>{e(str(r.get('run_id') or '—'))}</td><td>{e(status)}</td>"
                    f"<td>{_wall(r.get('wall_time_s'))}</td><td><code>{e(where)}</code></td></tr>")
    opened = " open" if len(rows) <= OPEN_UP_TO else ""
    return (f"<details{opened}><summary>{len(rows)} runs</summary>\n"
            '<table class="ablation runs"><thead><tr><th>run id</th><th>status</th><th>wall time</th>'
            "<th>directory</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n</details>")


def caption(kind: str, number: int, text: str) -> str:
    """``<p class="caption"><b>Table 1.</b> text</p>`` (HTML-escaped text)."""
    return f'<p class="caption"><b>{kind} {number}.</b> {e(text)}</p>'


def table_caption(summary: pd.DataFrame, what: str, labels: dict | None = None) -> str:
    keys = summary.attrs["group_keys"]
    base = summary.attrs.get("baseline")
    by = ", ".join((labels or {}).get(k, k) for k in keys) or "all runs"
    text = f"{what} per cell ({by}): mean ± 95% CI over seeds"
    if base:
        text += f", and the difference from the baseline cell {cell_label(keys, tuple(base.values()), labels)}"
    return text + "."


def figure_caption(title: str, name: str, band: str, baseline: str | None) -> str:
    if name == "diag_prob_bins":
        return (f"{title}: per π_old bin, each run's mean over steps, then per cell the mean ± 95% CI over "
                "seeds.")
    band_text = {"ci": "the band its 95% CI over seeds (Student t)", "std": "the band ± 1 std over seeds",
                 "minmax": "the band the seeds' range", "none": "no band"}[band]
    base = f"; the baseline cell ({baseline}) is black and thicker" if baseline else ""
    return (f"{title}: per cell, the mean over seeds at each logged step, {band_text}, clipped to the "
            f"metric's range{base}; n in the legend = runs per cell.")
