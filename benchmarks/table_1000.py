"""`grpolab table` on 1,000 synthetic run records (20 cells × 50 seeds): in-process and as a fresh
command (imports included), median of several runs. Goal: under 2 s.

    python -m benchmarks.table_1000 [--repeats 5]

``measure`` and ``table_rows`` are also used by ``benchmarks.sweep_overhead``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainer.run_record import SweepPaths

GOAL_S = 2.0
LABELS = {"in_process": "in process", "command": "whole command (imports included)"}


def measure(repeats: int = 5) -> dict[str, list[float]]:
    """Seconds per run, ``repeats`` times each: ``render_table`` in this process (``in_process``) and
    ``grpolab table SWEEP`` (``python -m sweeps.cli table SWEEP``) as a fresh process (``command``),
    on 1,000 synthetic records written to a temporary directory (removed after)."""
    from analysis.synthetic import write_synthetic_sweep
    from analysis.table import render_table

    tmp = Path(tempfile.mkdtemp(prefix="grpolab-table1000-"))
    try:
        sweep = write_synthetic_sweep(tmp / "sweep", seeds=range(50), steps=3)
        runs = sum(1 for _ in SweepPaths(sweep).runs.iterdir())
        if runs != 1000:
            raise RuntimeError(f"synthetic sweep has {runs} runs, expected 1000")
        out: dict[str, list[float]] = {"in_process": [], "command": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            render_table(sweep)
            out["in_process"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "sweeps.cli", "table", str(sweep)], check=True, capture_output=True)
            out["command"].append(time.perf_counter() - t0)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table_rows(times: dict[str, list[float]]) -> list[tuple[str, float, float, float]]:
    """(label, median, min, max) per way of running it."""
    return [(LABELS[k], statistics.median(xs), min(xs), max(xs)) for k, xs in times.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats={args.repeats}: must be >= 1")
    print("| grpolab table, 1,000 runs | median s | min s | max s | goal |")
    print("|---|---:|---:|---:|---|")
    for label, med, lo, hi in table_rows(measure(args.repeats)):
        print(f"| {label} | {med:.2f} | {lo:.2f} | {hi:.2f} | < {GOAL_S:g} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
