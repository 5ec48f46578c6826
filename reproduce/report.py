"""A reproduction's report: ``claims.json`` (every number, the rule, the verdict), ``report.md`` and
a self-contained ``report.html`` with the figures. The verdict column is the only place a verdict
is written, and ``reproduce.claims.verdict_of`` re-derives it from the numbers in ``claims.json``."""
from __future__ import annotations

import base64
import datetime as dt
import html
import math
import shlex
from pathlib import Path

from trainer.run_record import atomic_write_json, atomic_write_text


def _num(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.3g}"


def measured(row: dict) -> str:
    unit = row["unit"] if row["unit"] in ("", "×") else " " + row["unit"]
    ci = f" [{_num(row['lo'])}, {_num(row['hi'])}]" if math.isfinite(row["lo"]) else ""
    return f"{_num(row['effect'])}{unit}{ci}, n = {row['n']}"


def verdict_text(row: dict) -> str:
    return row["verdict"] + (" (quick)" if row["quick"] else "")


def command(paper: str, quick: bool, overrides) -> str:
    """The command that reruns this report, secret-looking values redacted (``trainer.secrets``)."""
    from trainer.secrets import redact_overrides

    return shlex.join(["grpolab", "reproduce", paper, *(["--quick"] if quick else []), *redact_overrides(overrides)])


def _cell(text: str) -> str:
    """A Markdown table cell: a ``|`` in the text (|A|) must not end the cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_table(rows: list[dict]) -> str:
    lines = ["| claim | paper says | paper's number | grpolab measured (CI) | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['id']}` ({r['where']}) | {_cell(r['quote'])} | {_cell(r['paper_value'] or '–')} | "
                     f"{_cell(measured(r))} | **{verdict_text(r)}** |")
    return "\n".join(lines)


def _details(r: dict) -> str:
    d = r["details"]
    keep = {k: v for k, v in d.items() if k not in ("per_batch_bins", "group_grad_norm", "bin_tokens",
                                                      "first_order_ratio", "dprob_norm", "per_bin")}
    ratios = d.get("first_order_ratio")
    if ratios:  # per batch {arm: ratio}: the mean per arm is what a reader checks against 1
        keep["first-order ratio (mean over batches)"] = {arm: sum(r[arm] for r in ratios) / len(ratios)
                                                         for arm in ratios[0]}
    text = ", ".join(f"{k} = {_short(v)}" for k, v in keep.items())
    return text


def _short(v):
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, list):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in v.items()) + "}"
    return str(v)


def timing_text(t: dict) -> str:
    """This invocation's wall time, and what the work cost wherever it was done (a re-run that finds
    every run complete still states the runs' own time)."""
    return (f"This invocation: {t['total_s']:.0f} s (sweeps {t['sweep_s']:.0f} s, probe {t['probe_s']:.0f} s); "
            f"the work: {t.get('runs', 0)} runs, {t.get('runs_compute_s', 0):.0f} s of run time in all, and a "
            f"{t.get('probe_compute_s', 0):.0f} s probe")


def markdown(meta: dict, rows: list[dict], figures: list) -> str:
    t = meta["timing"]
    quick = (" **Quick run: fewer seeds and steps; its verdicts are marked (quick) and are not the "
             "reproduction's.**" if meta["quick"] else "")
    parts = [f"# Reproduction: {meta['title']} (arXiv {meta['arxiv']})", "",
             f"`{meta['command']}` — {meta['date']}. {timing_text(t)}.{quick}",
             "", meta["note"], "", summary_table(rows), "", "## Rules and details", ""]
    for r in rows:
        parts += [f"- `{r['id']}`: {r['measure']}. Rule ({int(round(100 * r['level']))}% CI): {r['rule_text']}. "
                  f"Decided by: {r['why']}." + (f" Details: {_details(r)}." if _details(r) else "")]
    if meta["caveats"]:
        parts += ["", "## Scale", ""] + [f"- {c}" for c in meta["caveats"]]
    if figures:
        parts += ["", "## Figures", ""]
        parts += [f"![{cap}]({Path(p).name})\n\n{cap}\n" for p, cap in figures]
    for d in meta.get("sweep_dirs", []):
        parts += ["", f"A sweep's own table: `grpolab table {d}`."]
    return "\n".join(parts) + "\n"


def html_page(meta: dict, rows: list[dict], figures: list) -> str:
    e = html.escape
    head = (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(meta['title'])}</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
            ".reproduced{color:#006d2c}.not{color:#b30000}.inconclusive{color:#666}</style></head><body>")
    body = [f"<h1>Reproduction: {e(meta['title'])} (arXiv {e(meta['arxiv'])})</h1>",
            f"<p><code>{e(meta['command'])}</code> — {e(meta['date'])}. {e(timing_text(meta['timing']))}"
            + (" — <b>quick run: verdicts marked (quick)</b>" if meta["quick"] else "") + "</p>",
            f"<p>{e(meta['note'])}</p>",
            "<table><tr><th>claim</th><th>paper says</th><th>paper's number</th><th>measured (CI)</th>"
            "<th>verdict</th><th>rule</th></tr>"]
    for r in rows:
        cls = {"reproduced": "reproduced", "not reproduced": "not"}.get(r["verdict"], "inconclusive")
        body.append(f"<tr><td><code>{e(r['id'])}</code><br>{e(r['where'])}</td><td>{e(r['quote'])}</td>"
                    f"<td>{e(r['paper_value'] or '–')}</td>"
                    f"<td>{e(measured(r))}<br><small>{e(r['measure'])}</small></td>"
                    f"<td class='{cls}'><b>{e(verdict_text(r))}</b><br><small>{e(r['why'])}</small></td>"
                    f"<td><small>{e(r['rule_text'])}</small></td></tr>")
    body.append("</table>")
    for c in meta["caveats"]:
        body.append(f"<p><i>{e(c)}</i></p>")
    for p, cap in figures:
        data = base64.b64encode(Path(p).read_bytes()).decode()
        body.append(f"<figure><img src='data:image/png;base64,{data}' alt='{e(cap)}' style='max-width:100%'>"
                    f"<figcaption>{e(cap)}</figcaption></figure>")
    return head + "\n".join(body) + "</body></html>\n"


def changes_text(overrides) -> str:
    """The overrides that change what the preset's note says (where and how runs execute aside)."""
    from trainer.secrets import redact_overrides

    shown = [o for o in redact_overrides(overrides)
             if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] not in ("paths", "launcher", "tracker", "hydra")]
    return (f"On top of the preset, this run set `{' '.join(shown)}`: where the note above says otherwise, "
            "these values are what ran." if shown else "")


def write_report(out: Path, paper, plan, results, figures, timing, quick, overrides, sweep_dirs=(),
                 model: str = "the tiny model") -> None:
    rows = [r.as_dict() for r in results]
    note = " ".join(x for x in (plan.note, changes_text(overrides)) if x)
    meta = {"paper": paper.name, "title": paper.title, "arxiv": paper.arxiv, "quick": quick,
            "command": command(paper.name, quick, overrides), "note": note,
            "caveats": [c.format(model=model) for c in paper.caveats],
            "timing": timing, "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "sweep_dirs": list(sweep_dirs),
            "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in ("reproduced", "not reproduced",
                                                                           "inconclusive")}}
    atomic_write_json(out / "claims.json", {"meta": meta, "claims": rows})
    atomic_write_text(out / "report.md", markdown(meta, rows, figures))
    atomic_write_text(out / "report.html", html_page(meta, rows, figures))
