"""One self-contained HTML report per sweep: its plan, what each cell changes in the config, the
ablation tables and every plot with captions, and the list of runs (PNG embedded as data: URIs,
CSS inline, no scripts), so the file can be mailed or archived.

    grpolab report SWEEP_DIR|wandb://ENTITY/PROJECT/SWEEP_ID [--out FILE] [--rows k] [--cols k]
                   [--baseline k=v] [--metrics a,b] [--label k=TEXT] [--keep-constant]
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import sys
from collections import Counter
from pathlib import Path

from analysis import report_sections as sections
from analysis.cli_args import add_table_args, dry_run_line, epilog, parse_baseline
from analysis.history import history_keys, parse_metric, resolve_key
from analysis.labels import check_labels, parse_labels
from analysis.plots import CURVE_METRICS, cell_label, png_bytes, sweep_figures
from analysis.run_configs import CachedConfigs, sparse_eval_warning
from analysis.sources import default_out_dir, open_source, resolve_source, runs_frame
from analysis.table import DEFAULT_METRICS, add_layout_args, build_table
from trainer.run_record import RunStatus

# The second table: history-derived metrics, those logged by the sweep's runs.
DIAG_METRICS = ["final_pass@k", "best_pass@k", "mean:diag/lld_mean", "mean:diag/lld_lazy_frac",
                "mean:diag/flip_against_sign_frac", "mean:train/asym", "mean:train/nthr/selected_frac"]

CSS = """
body { font-family: system-ui, -apple-system, "DejaVu Sans", sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table.ablation { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
table.ablation th, table.ablation td { padding: 0.3em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right;
       white-space: nowrap; }
table.ablation thead th { border-bottom: 2px solid #444; text-align: center; }
table.ablation tbody th { text-align: left; font-weight: normal; }
table.ablation td.baseline { background: #f3f6fb; }
.delta { color: #555; font-size: 0.9em; }
p.notes { font-size: 0.8em; color: #555; margin: 0.2em 0; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; font-size: 0.9em; }
dl.meta dt { font-weight: bold; } dl.meta dd { margin: 0; font-family: monospace; }
div.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1em; }
figure { margin: 0; }
figcaption, p.caption { font-size: 0.85em; color: #333; margin: 0.3em 0 0.2em; max-width: 60em; }
table.ablation td.cfg { text-align: left; white-space: normal; font-size: 0.95em; }
table.ablation.runs td { text-align: left; } table.runs tr.notdone td { color: #a33; }
p.warning { color: #8a4b00; font-size: 0.85em; }
details summary { cursor: pointer; font-size: 0.9em; }
div.scroll { overflow-x: auto; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _scroll(table_html: str, caption: str = "") -> str:
    """Wide tables scroll sideways instead of overflowing the page (caption and notes stay visible
    under the table)."""
    head, sep, notes = table_html.partition("</table>")
    return f'<div class="scroll">{head}{sep}</div>{caption}{notes}'


def _only(labels: dict, keys) -> dict:
    return {k: v for k, v in labels.items() if k in keys}


def shown_keys(source, df, metrics=None) -> tuple[list, list, list]:
    """(table metrics, diagnostics-table metrics, curve metrics) the report shows: what ``--label``
    may name, besides the swept keys."""
    logged = history_keys(df, source)
    diag = [m for m in DIAG_METRICS if resolve_key(parse_metric(m)[1], logged) is not None]
    shown = metrics or [m for m in DEFAULT_METRICS if m in df.attrs["metric_keys"]]
    return shown, diag, [m for m in CURVE_METRICS if resolve_key(m, logged) is not None]


def render_report(source, metrics=None, rows=None, cols=None, baseline=None, digits: int = 3,
                  plan: dict | None = None, labels: dict | None = None, keep_constant: bool = False) -> str:
    """The report's HTML text. ``plan``: the sweep's plan (default: ``source.plan`` where the
    source has one); ``labels``: {swept key, table metric or curve metric: shown name}."""
    e = html.escape
    df = runs_frame(source)
    labels = dict(labels or {})
    plan = plan if plan is not None else (getattr(source, "plan", None) or {})
    swept = df.attrs["swept_keys"]
    shown_metrics, diag, curves = shown_keys(source, df, metrics)
    check_labels(labels, [*swept, *shown_metrics, *diag, *curves])
    layout = {"digits": digits, "keep_constant": keep_constant}
    main = build_table(source, metrics, rows, cols, baseline, df=df, labels=_only(labels, [*swept, *shown_metrics]),
                       **layout)
    summary = main.summary
    caption = sections.caption("Table", 1, sections.table_caption(summary, "Final metrics", labels))
    out = [f"<h2>Ablation table</h2>\n{_scroll(main.render('html', digits), caption)}"]
    if diag:
        t = build_table(source, diag, rows, cols, baseline, df=df, labels=_only(labels, [*swept, *diag]), **layout)
        out += ["<h2>pass@k and diagnostics</h2>\n"
                '<p class="notes">final/best pass@k: last/max logged eval/pass@k (unbiased estimator, '
                "k = rollout.eval_n); mean of &lt;key&gt;: the mean over the run's logged steps.</p>\n"
                + _scroll(t.render("html", digits),
                          sections.caption("Table", 2, sections.table_caption(t.summary, "pass@k and diagnostics",
                                                                              labels)))]
    configs = CachedConfigs(source)
    config = sections.config_section(configs, df, summary, labels)
    if config:
        out.append("<h2>Cells: what each changes in the config</h2>\n" + _scroll(config))
    keys, base = summary.attrs["group_keys"], summary.attrs.get("baseline")
    figs = sweep_figures(source, group_keys=keys, df=df, baseline=base or False,
                         labels=_only(labels, [*swept, *curves]))
    base_text = cell_label(keys, tuple(base.values()), labels) if base else None
    plots = []
    for i, (name, (title, fig)) in enumerate(figs.items(), start=1):
        text = sections.figure_caption(title, name, "ci", base_text)
        plots.append(f"<figure>{_img(png_bytes(fig), title)}<figcaption><b>Figure {i}.</b> {e(text)}"
                     "</figcaption></figure>")
    if plots:
        warning = sparse_eval_warning(configs, df)
        note = f'<p class="warning">{e(warning.removeprefix("warning: "))}</p>\n' if warning else ""
        out.append('<h2>Plots</h2>\n' + note + '<div class="plots">\n' + "\n".join(plots) + "\n</div>")
    out.append("<h2>Runs</h2>\n" + sections.runs_section(df, getattr(source, "root", None)))
    status = Counter(df["status"].fillna(RunStatus.missing.value))
    code = plan.get("code_version") or {}
    meta = {
        "sweep": plan.get("sweep_id", source.name),
        "command": " ".join(plan.get("command", [])) or "—",
        "swept keys": ", ".join(df.attrs["swept_keys"]) or "—",
        "runs": ", ".join(f"{s}: {n}" for s, n in sorted(status.items())),
        "code": f"{code.get('commit', '?')}{' (dirty)' if code.get('dirty') else ''}" if code else "—",
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in meta.items())
    title = f"grpolab sweep report: {meta['sweep']}"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{e(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{e(title)}</h1>\n<dl class=\"meta\">{dl}</dl>\n"
            + "\n".join(out) + "\n</body>\n</html>\n")


def write_report(sweep_dir, out=None, **kwargs) -> Path:
    """Write the report of a sweep dir or ``wandb://ENTITY/PROJECT/SWEEP_ID`` (default: the sweep
    dir's ``report.html``; ``./<sweep id>/report.html`` for W&B)."""
    source = sweep_dir if hasattr(sweep_dir, "runs") else open_source(str(sweep_dir))
    text = render_report(source, **kwargs)
    out = Path(out) if out else default_out_dir(source) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


EXAMPLES = [
    ("grpolab report outputs/sweeps/lopti", "one self-contained HTML page with the tables and plots"),
    ("grpolab report kl --out kl.html --cols algorithm.kl.coef", "sweep id kl, written to kl.html"),
    ("grpolab report --root outputs kl_search", "a tune study's runs"),
    ("grpolab report kl --label algorithm.kl.coef=β,final_eval_accuracy=Accuracy", "renamed everywhere"),
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grpolab report", description="Self-contained HTML report of a sweep: its "
                                "tables, plots and provenance in one file.", epilog=epilog(EXAMPLES),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_table_args(p)
    add_layout_args(p)
    p.add_argument("--out", default=None, help="output file (default SWEEP_DIR/report.html; "
                                                "./<sweep id>/report.html for W&B)")
    return p


def main(argv=None) -> int:
    """CLI: ``grpolab report SWEEP_DIR|wandb://ENTITY/PROJECT/SWEEP_ID [--out FILE] [table options]``."""
    args = build_parser().parse_args(argv)
    try:
        source = resolve_source(args.sweep_dir, args.root)
        if args.dry_run:
            labels = parse_labels(args.label)
            if getattr(source, "root", None) is not None:  # the keys checked against the records
                build_table(source, args.metrics, args.rows, args.cols, parse_baseline(args.baseline))
                df = runs_frame(source)
                check_labels(labels, [*df.attrs["swept_keys"], *(k for ks in shown_keys(source, df, args.metrics)
                                                                  for k in ks)])
            print(dry_run_line("report", source, [args.out or default_out_dir(source) / "report.html"]))
            return 0
        out = write_report(source, args.out, metrics=args.metrics, rows=args.rows, cols=args.cols,
                           baseline=parse_baseline(args.baseline), digits=args.digits,
                           labels=parse_labels(args.label), keep_constant=args.keep_constant)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
