"""Names and layout for publication: ``--label KEY=TEXT`` in headers and notes (raw keys in CSV),
readable default metric names, constant swept keys moved to the notes, and the LaTeX table's
decimal-aligned siunitx columns (compiled by pdflatex in ``test_analysis_latex.py``)."""
from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from analysis.labels import parse_labels, readable
from analysis.synthetic import write_synthetic_sweep
from analysis.table import main, render_table

KL = "algorithm.kl.coef"
AXES = {"variant": ["grpo", "ar"], KL: [0.0, 0.01], "lr": [1e-6]}  # lr: one value in every cell


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return write_synthetic_sweep(tmp_path_factory.mktemp("labels") / "s", axes=AXES, seeds=range(3), steps=4)


def test_parse_labels_repeated_and_comma_lists():
    assert parse_labels(["a=β", "b.c=x, y,d=Acc (%)"]) == {"a": "β", "b.c": "x, y", "d": "Acc (%)"}
    with pytest.raises(ValueError, match=r"--label 'nolabel': expected KEY=TEXT"):
        parse_labels(["nolabel"])


def test_readable_metric_names():
    assert readable("final_eval_accuracy") == "final eval accuracy"
    assert readable("warmstart_eval_accuracy") == "warm-start eval accuracy"
    assert readable("wall_time_s") == "wall time (s)"
    assert readable("mean:diag/lld_mean") == "mean of diag/lld_mean"
    assert readable("final_pass@k") == "final pass@k" and readable("diag/lld_mean") == "diag/lld_mean"


def test_labels_rename_headers_and_notes_but_not_csv(sweep):
    labels = {KL: "β", "final_eval_accuracy": "Accuracy", "variant": "method"}
    md = render_table(sweep, metrics=["final_eval_accuracy"], labels=labels)
    assert md.splitlines()[0] == "| method | β | Accuracy | n |"
    assert "difference vs the baseline cell method=grpo, β=0;" in md
    html = render_table(sweep, metrics=["final_eval_accuracy"], fmt="html", labels=labels)
    assert "<th>β</th>" in html and "<th>Accuracy</th>" in html and KL not in html
    csv = pd.read_csv(io.StringIO(render_table(sweep, metrics=["final_eval_accuracy"], fmt="csv", labels=labels)))
    assert {"variant", KL}.issubset(csv.columns) and set(csv["metric"]) == {"final_eval_accuracy"}


def test_unknown_label_key_is_refused_in_one_line(sweep, capsys):
    assert main([str(sweep), "--metrics", "final_eval_accuracy", "--label", "nope=X"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --label nope=X: unknown key 'nope'; valid: variant, {KL}, lr, final_eval_accuracy\n")


def test_constant_key_moves_to_the_notes_unless_kept(sweep, capsys):
    md = render_table(sweep, metrics=["final_eval_accuracy"])
    assert md.splitlines()[0] == f"| variant | {KL} | final eval accuracy | n |"
    notes = md.splitlines()[7]
    assert notes.startswith("All cells: lr=1e-06. Mean ± 95% CI")
    assert "baseline cell variant=grpo, algorithm.kl.coef=0;" in notes  # lr not repeated there
    assert main([str(sweep), "--metrics", "final_eval_accuracy", "--keep-constant"]) == 0
    kept = capsys.readouterr().out
    assert kept.splitlines()[0] == f"| variant | {KL} | lr | final eval accuracy | n |" and "All cells" not in kept


def _top_level_cells(row: str) -> int:
    """Cells of a tabular row: ``&`` outside braces (a multicolumn counts its span)."""
    depth, cells = 0, 1
    for ch in row:
        depth += ch == "{"
        depth -= ch == "}"
        cells += ch == "&" and depth == 0
    spans = sum(int(w) - 1 for w in re.findall(r"\\multicolumn\{(\d+)\}", row))
    return cells + spans


def test_latex_numbers_sit_in_measured_s_columns(sweep):
    """Every number in its own S column, widths measured: accuracies 1.3, response lengths (~250
    tokens) 3.3, signed Δ and bounds with a sign slot; every row fills every column."""
    tex = render_table(sweep, metrics=["final_eval_accuracy", "final_response_length"], fmt="latex")
    spec = re.search(r"\\begin\{tabular\}\{(.*)\}\n", tex).group(1)
    formats = re.findall(r"S\[table-format=([^\]]+)\]", spec)
    assert formats[:2] == ["1.3", "1.3"] and formats[5] == "3.3"  # mean, CI, Δ, lo, hi | mean of the lengths
    assert all(f.startswith("+") for f in formats[2:5])  # Δ, lo, hi
    bare = re.sub(r"[@>]\{[^}]*\}|\[[^\]]*\]|\s", "", spec)  # column letters only
    assert set(bare) == {"l", "S", "r"}
    n_cols = len(bare)
    body = tex[tex.index("\\midrule") + 9:tex.index("\\bottomrule")].strip().splitlines()
    assert len(body) == 4 and all(_top_level_cells(r.removesuffix(" \\\\")) == n_cols for r in body), (spec, body)
    assert "grpo & 0 & 0." in body[0] and body[0].count("\\multicolumn{3}{c}{}") == 2  # the baseline: no Δ
