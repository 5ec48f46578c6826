"""`grpolab table` on 1,000 run records (synthetic, in the trainer's format): every cell is read and
aggregated. How long it takes is measured by `python -m benchmarks.table_1000` (a benchmark, not a
timed test: a busy CI machine must not fail the suite)."""
from __future__ import annotations

import subprocess
import sys

from analysis.synthetic import write_synthetic_sweep
from analysis.table import main


def test_table_of_1000_runs(tmp_path, capsys):
    sweep = write_synthetic_sweep(tmp_path / "sweep", seeds=range(50), steps=3)  # 20 cells × 50 seeds
    assert len(list((sweep / "runs").iterdir())) == 1000
    rc = main([str(sweep), "--rows", "algorithm.kl.coef", "--cols", "variant", "--format", "all",
               "--out", str(tmp_path / "table")])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 5 + 2 and "n = 50 seeds per cell" in lines[-1]


def test_table_cli_process_on_1000_runs(tmp_path):
    sweep = write_synthetic_sweep(tmp_path / "sweep", seeds=range(50), steps=3)
    proc = subprocess.run([sys.executable, "-m", "analysis.table", str(sweep)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("| 50 |") == 20
