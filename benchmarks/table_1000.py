"""`grpolab table` on 1,000 synthetic run records (20 cells × 50 seeds): in-process and as a fresh
command (imports included), median of several runs. The issue's goal: under 2 s.

    python -m benchmarks.table_1000 [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    from analysis.synthetic import write_synthetic_sweep
    from analysis.table import render_table

    sweep = write_synthetic_sweep(Path(tempfile.mkdtemp()) / "sweep", seeds=range(50), steps=3)
    inproc, cli = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        render_table(sweep)
        inproc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "analysis.table", str(sweep)], check=True, capture_output=True)
        cli.append(time.perf_counter() - t0)
    print("| grpolab table, 1,000 runs | median s | min s | max s | goal |")
    print("|---|---:|---:|---:|---|")
    for name, xs in (("in process", inproc), ("whole command (imports included)", cli)):
        print(f"| {name} | {statistics.median(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} | < 2 s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
