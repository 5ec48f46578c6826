"""The LaTeX (booktabs) table compiles with pdflatex, for every layout we emit.

Needs Debian's texlive (``apt-get install texlive-latex-base texlive-latex-recommended``);
skipped, saying so, where pdflatex is not installed.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from analysis.synthetic import write_synthetic_sweep
from analysis.table import render_table

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("pdflatex") is None,
                       reason="pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)"),
]

DOC = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\usepackage[margin=1cm,landscape]{geometry}
\begin{document}
\begin{table}\centering\scriptsize
\input{table.tex}
\caption{ablation}
\end{table}
\end{document}
"""


@pytest.mark.parametrize("layout", [{}, {"rows": ["algorithm.kl.coef"], "cols": ["variant"]}])
def test_latex_table_compiles(tmp_path, layout):
    sweep = write_synthetic_sweep(tmp_path / "sweep", axes={"variant": ["grpo", "ar_lopti"],
                                                            "algorithm.kl.coef": [0.0, 0.01]},
                                  seeds=range(3), steps=4)
    tex = render_table(sweep, metrics=["final_eval_accuracy", "final_pass@k", "mean:diag/lld_lazy_frac"],
                       fmt="latex", **layout)
    (tmp_path / "table.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text(DOC)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Missing character" not in log  # every Unicode symbol was turned into TeX
