"""The LaTeX table (booktabs + siunitx ``S`` columns) compiles with pdflatex, for every layout we
emit and with TeX's special characters and a Greek letter in values and labels.

Needs Debian's texlive with siunitx (``apt-get install texlive-latex-base texlive-latex-recommended
texlive-science``); skipped, saying so, where pdflatex or siunitx.sty is not installed. Each
compile takes ~1 s; marked slow for the sweep each test writes and the TeX start-up on a busy box.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from analysis.synthetic import write_synthetic_sweep
from analysis.table import render_table


def _has_siunitx() -> bool:
    if shutil.which("kpsewhich") is None:
        return False
    return bool(subprocess.run(["kpsewhich", "siunitx.sty"], capture_output=True, text=True).stdout.strip())


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("pdflatex") is None,
                       reason="pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)"),
    pytest.mark.skipif(not _has_siunitx(), reason="siunitx.sty not installed (apt-get install texlive-science)"),
]

# A minimal document: only the packages the table's first line names (plus the page geometry).
DOC = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\usepackage{siunitx}
\usepackage[margin=1cm,landscape]{geometry}
\begin{document}
\begin{table}\centering\scriptsize
\input{table.tex}
\caption{ablation}
\end{table}
\end{document}
"""
SPECIALS = r"x_%&#${}~^\y"


def compile_tex(tmp_path, tex: str) -> str:
    """Compile ``tex`` inside DOC; the log (asserting success and no missing glyph)."""
    (tmp_path / "table.tex").write_text(tex, encoding="utf-8")
    (tmp_path / "doc.tex").write_text(DOC)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Missing character" not in log  # every Unicode symbol was turned into TeX
    return log


@pytest.mark.parametrize("layout", [{}, {"rows": ["algorithm.kl.coef"], "cols": ["variant"]}])
def test_latex_table_compiles(tmp_path, layout):
    sweep = write_synthetic_sweep(tmp_path / "sweep", axes={"variant": ["grpo", "ar_lopti"],
                                                            "algorithm.kl.coef": [0.0, 0.01]},
                                  seeds=range(3), steps=4)
    tex = render_table(sweep, metrics=["final_eval_accuracy", "final_pass@k", "mean:diag/lld_lazy_frac"],
                       fmt="latex", **layout)
    assert tex.splitlines()[0] == r"% needs \usepackage{booktabs} and \usepackage{siunitx} (v3, TeX Live 2021 or later)"
    compile_tex(tmp_path, tex)


def test_special_characters_and_greek_compile_and_show(tmp_path):
    """TeX's specials in a swept value and a label, β in a label, a constant key in the notes: the
    file compiles and the PDF's text shows them as written (pdftotext, where installed)."""
    sweep = write_synthetic_sweep(tmp_path / "sweep", axes={"variant": ["grpo", SPECIALS],
                                                            "algorithm.kl.coef": [0.0, 0.01], "lr": [1e-6]},
                                  seeds=range(3), steps=4)
    labels = {"algorithm.kl.coef": "β", "final_eval_accuracy": "Acc. (% & #)", "variant": "method_{1}"}
    tex = render_table(sweep, metrics=["final_eval_accuracy", "final_response_length"], fmt="latex", labels=labels)
    assert r"x\_\%\&\#\$\{\}\textasciitilde{}\textasciicircum{}\textbackslash{}y" in tex
    assert r"$\beta$" in tex and "β" not in tex
    assert "% All cells: lr=1e-06." in tex  # the constant key moved to the notes
    compile_tex(tmp_path, tex)
    if shutil.which("pdftotext"):
        subprocess.run(["pdftotext", "-layout", "doc.pdf", "doc.txt"], cwd=tmp_path, check=True, timeout=60)
        text = (tmp_path / "doc.txt").read_text()
        assert "x_%&#${}" in text and "Acc. (% & #)" in text and "method_{1}" in text and "β" in text


def test_cells_with_their_own_n_and_no_interval_compile(tmp_path):
    """Cells resting on fewer seeds than the rest say their n in the text column; a cell of one
    seed has no CI ("—") and its Δ (Welch, no interval) stands without brackets."""
    axes = {"variant": ["grpo", "ar"], "algorithm.kl.coef": [0.0, 0.01]}
    sweep = write_synthetic_sweep(tmp_path / "sweep", axes=axes, seeds=range(3), steps=4)
    runs = sorted((sweep / "runs").iterdir(), key=lambda r: r.name)
    cells: dict = {}
    for run in runs:
        cells.setdefault(run.name.rsplit("_s", 1)[0], []).append(run)
    one, two = list(cells.values())[1:3]
    for run in one[1:] + two[2:]:  # one cell keeps 1 seed, another 2
        (run / "summary.json").unlink()
    tex = render_table(sweep, metrics=["final_eval_accuracy"], fmt="latex", rows=["algorithm.kl.coef"],
                       cols=["variant"])
    assert r"\,($n{=}1$)" in tex and r"\,($n{=}2$)" in tex and "{---}" in tex
    assert r"\multicolumn{3}{l}{$" in tex  # a difference without an interval: no dangling bracket
    compile_tex(tmp_path, tex)
