"""`grpolab table` on 1,000 run records takes under 2 s (the issue's budget), measured on
synthetic records in the trainer's format (analysis.synthetic)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from analysis.synthetic import write_synthetic_sweep
from analysis.table import main

BUDGET_S = 2.0


def test_table_of_1000_runs_under_2s(tmp_path, capsys):
    sweep = write_synthetic_sweep(tmp_path / "sweep", seeds=range(50), steps=3)  # 20 cells × 50 seeds
    assert len(list((sweep / "runs").iterdir())) == 1000
    start = time.perf_counter()
    rc = main([str(sweep), "--rows", "algorithm.kl.coef", "--cols", "variant", "--format", "all",
               "--out", str(tmp_path / "table")])
    elapsed = time.perf_counter() - start
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 5 + 2 and "n = 50 seeds per cell" in lines[-1]
    assert elapsed < BUDGET_S, f"table of 1,000 runs took {elapsed:.2f} s (budget {BUDGET_S} s)"


@pytest.mark.slow  # a fresh interpreter (imports included): timing is sensitive to a busy machine
def test_table_cli_process_on_1000_runs_under_2s(tmp_path):
    sweep = write_synthetic_sweep(tmp_path / "sweep", seeds=range(50), steps=3)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "analysis.table", str(sweep)], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("| 50 |") == 20
    assert elapsed < BUDGET_S, f"python -m analysis.table on 1,000 runs took {elapsed:.2f} s (budget {BUDGET_S} s)"
