"""Sweep overheads: what a sweep costs around its training steps.

    python -m benchmarks.sweep_overhead [--quick] [--out PATH] [--no-slurm]

1. Submitting a 100-cell sweep (100 seeds of the tests' fast config):
   - local launcher: it has no ``--detach`` (its cells are child processes of the command), so two
     figures: ``grpolab sweep --dry-run`` (whole command: Python start, plan, validate every cell),
     and, in one fresh process, the imports of ``grpolab sweep`` + plan + ``sweep.json`` + 100
     submissions with submitit's ``LocalExecutor`` exactly as ``sweeps/launch_local.py`` makes
     them (each job process is killed right after its submission returns, outside the timer);
   - ``launcher=slurm_local --detach`` on the local test cluster (``slurm/measure.py``'s
     ``submit_time``: the whole command, then ``scancel``). The cluster is started with
     ``bash slurm/start.sh`` when it is not up (root only) and stopped afterwards if started here.
2. Job start to first training step: a few tiny cells through ``grpolab sweep`` (local launcher,
   one at a time) and, if the cluster is up, through SLURM; read from the ``timing`` block of each
   run's ``summary.json`` (docs/run-record.md), model load and the warm-start eval shown apart.
3. ``grpolab table`` on 1,000 synthetic run records (``benchmarks/table_1000.py``).
4. Peak RSS of a tiny run: ``grpolab train train.steps=2`` on the default tiny model, and of the
   imports alone, from ``wait4``'s rusage of that child only.

Writes a Markdown section (default ``benchmarks/results/sweep_overhead.md``). ``--quick`` runs fewer
cells and table repeats: ≈ 1 min instead of 1.5 at load ≈ 2 (up to 3 min under heavy load). Exit
status 1 if a measurement failed (a SLURM part skipped because the cluster cannot run here is not).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny model is local; any hub access is a bug
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.machine import date_fact, environment, load_fact
from benchmarks.report import bullets, command_line, markdown_table, write_text
from benchmarks.sweep_common import FULL, QUICK, ROOT, Row, last_line
from benchmarks.sweep_local import local_cells, local_submission
from benchmarks.sweep_slurm import slurm_rows

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "sweep_overhead.md"


# ---------------------------------------------------------------- 3. table
def table_rows(repeats: int) -> list[Row]:
    from benchmarks.table_1000 import GOAL_S, measure
    from benchmarks.table_1000 import table_rows as summarize

    return [Row(f"`grpolab table` on 1,000 run records, {label}", f"median {med:.2f} s (min {lo:.2f}, max {hi:.2f})",
                f"< {GOAL_S:g} s",
                f"{repeats} repeats; 20 cells × 50 seeds, synthetic (`benchmarks/table_1000.py`)")
            for label, med, lo, hi in summarize(measure(repeats))]


# ---------------------------------------------------------------- 4. peak RSS
def peak_rss(cmd: list[str], log: Path) -> tuple[float, float, str]:
    """(peak RSS in MiB, wall s, output) of ``cmd``: ``wait4`` returns the rusage of that child alone."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    wall = time.perf_counter() - t0
    text = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:4])}: exit {proc.returncode}: {last_line(text)}")
    return usage.ru_maxrss / 1024, wall, text  # Linux: ru_maxrss is in KiB


def rss_rows(tmp: Path) -> list[Row]:
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "sweeps.cli", "train", f"paths.output_root={tmp}", "train.steps=2",
           "--run-dir", str(tmp / "run")]
    mib, wall, text = peak_rss(cmd, tmp / "train.log")
    sft = " (it trained the SFT warm start first: not cached yet)" if "warm start: training SFT" in text else ""
    imp, _, _ = peak_rss([sys.executable, "-c", "import torch, transformers, trainer.run"], tmp / "imports.log")
    return [
        Row("peak RSS of a tiny run: `grpolab train train.steps=2`", f"{mib:.0f} MiB",
            notes=f"default tiny Qwen2 (0.6M parameters), 64 prompts × 8 responses, warm-start and final eval on "
                  f"200 prompts, {wall:.1f} s{sft}"),
        Row("peak RSS of the imports alone (`import torch, transformers, trainer.run`)", f"{imp:.0f} MiB",
            notes="the floor under any run's RSS"),
    ]


# ---------------------------------------------------------------- report
def render(cmd: str, facts: list[tuple[str, str]], rows: list[Row]) -> str:
    table = markdown_table(["measurement", "result", "goal", "notes"], "llll",
                           [[r.what, r.result, r.goal, r.notes] for r in rows])
    return "\n".join(["# Sweep overheads", "", f"`{cmd}`", "", *bullets(facts), "", table, "",
                      "Run records' `timing` block: docs/run-record.md. \"Tiny cells\" are the tests' fast config "
                      "(`tests/conftest.py` `fast_overrides`, 2 steps), seeds 0, 1, ….", ""])


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep_overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK.local_cells} local and {QUICK.slurm_cells} SLURM cells, {QUICK.table_repeats} table "
                        f"repeats (default {FULL.local_cells}, {FULL.slurm_cells}, {FULL.table_repeats})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown report (default %(default)s)")
    p.add_argument("--no-slurm", action="store_true", help="skip the SLURM measurements (never start the cluster)")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped (python -m benchmarks' limit): clean up
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="grpolab-sweep-overhead-"))
    parts = [
        ("local submission", lambda: local_submission(tmp / "submit", sizes.cells)),
        ("local cells", lambda: local_cells(tmp / "local", sizes.local_cells)),
        ("SLURM", (lambda: [Row("SLURM: submission and job start", "skipped: --no-slurm")]) if args.no_slurm
         else (lambda: slurm_rows(tmp / "slurm", sizes, args.quick))),
        ("table", lambda: table_rows(sizes.table_repeats)),
        ("peak RSS", lambda: rss_rows(tmp / "rss")),
    ]
    rows: list[Row] = []
    try:
        for name, part in parts:
            t0 = time.perf_counter()
            print(f"[sweep_overhead] {name} ...", flush=True)
            try:
                new = part()
            except Exception as e:  # any failure: report it and go on with the rest
                new = [Row(name, f"failed: {e}", failed=True)]
            rows += new
            for r in new:
                print(f"  {r.what}: {r.result}", flush=True)
            print(f"[sweep_overhead] {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    facts = environment() + [load_fact(load_start), ("run time", f"{time.perf_counter() - t_start:.0f} s"), date_fact()]
    report = render(command_line("python -m benchmarks.sweep_overhead", argv), facts, rows)
    print()
    print(report)
    write_text(args.out, report, "[sweep_overhead]")
    for r in rows:
        if r.failed:  # last on stderr: the reason `python -m benchmarks` shows
            print(f"[sweep_overhead] {r.what}: {r.result}", file=sys.stderr)
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
