"""Every benchmark in sequence, then one Markdown summary (``make bench``).

    python -m benchmarks [--quick | --full] [--out benchmarks/results/summary.md] [--only NAME ...]

Runs, each as its own process, ``benchmarks.trl_compare`` (GRPO step against TRL's GRPOTrainer),
``benchmarks.floor`` (the bare forward/backward floor), ``benchmarks.variant_overhead`` and
``benchmarks.sweep_overhead``, each with ``--out <temporary file>`` (their own default reports,
the last full runs, are left alone) and, by default, ``--quick``: the whole run fits in 10 minutes
on the 2-core CPU machine. ``--full`` runs each at its default (longer) size.

A benchmark that is missing, fails or runs past its time limit gets a status line with the reason
(its last stderr line) and the others still run; the exit status is 1 if any selected benchmark did
not finish cleanly. The summary holds the total wall time, the environment, a status table and each
benchmark's own section (headings one level down).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from benchmarks.machine import date_fact, environment, load_fact
from benchmarks.report import bullets, command_line, markdown_table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "summary.md"
FULL_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Bench:
    name: str  # its row; the module is benchmarks.<module or name>
    what: str
    budget_s: int  # its share of the 10-minute default run; the time limit is twice that
    module: Optional[str] = None
    args: tuple[str, ...] = ()  # extra arguments to the module

    @property
    def mod(self) -> str:
        return self.module or self.name


BENCHES = [
    Bench("trl_compare", "GRPO step time against TRL's GRPOTrainer (grpolab's default: π_old recomputed)", 100),
    Bench("trl_compare_rollout_logp", "the same with grpolab's algorithm.old_logp_source=rollout (no π_old forward)",
          100, module="trl_compare", args=("-o", "algorithm.old_logp_source=rollout")),
    Bench("floor", "bare forward/backward floor of a step", 90),
    Bench("async_rollout", "synchronous against lagged steps (rollout.async_steps=1, 2) and TRL, side by side", 120),
    Bench("variant_overhead", "each variant's step cost against its GRPO baseline", 180),
    Bench("sweep_overhead", "sweep submission, job start, table on 1,000 records, peak RSS", 120),
]


@dataclass
class Outcome:
    bench: Bench
    status: str  # "ok ...", or "failed: ..." / "skipped: ..."
    wall_s: Optional[float] = None
    section: str = ""

    @property
    def ok(self) -> bool:
        return self.status.startswith("ok")


def supports_quick(name: str) -> bool:
    """Whether ``benchmarks/<name>.py`` has a ``--quick`` flag (read from its source, without importing it)."""
    spec = importlib.util.find_spec(f"benchmarks.{name}")
    try:
        return '"--quick"' in Path(spec.origin).read_text()
    except (AttributeError, TypeError, OSError):
        return False


def _pump(stream, sink, prefix: str, keep: collections.deque) -> None:
    for line in stream:
        keep.append(line.rstrip("\n"))
        sink.write(prefix + line)
        sink.flush()


def run_one(b: Bench, quick: bool, timeout_s: float, workdir: Path) -> Outcome:
    """``python -m benchmarks.<name> --out FILE [--quick]``, its output echoed with a prefix."""
    if importlib.util.find_spec(f"benchmarks.{b.mod}") is None:
        return Outcome(b, f"skipped: module not found (benchmarks/{b.mod}.py)")
    out = workdir / f"{b.name}.md"
    cmd = [sys.executable, "-m", f"benchmarks.{b.mod}", *b.args, "--out", str(out)]
    size_note = ""
    if quick:
        if supports_quick(b.mod):
            cmd.append("--quick")
        else:
            size_note = " (it has no --quick: ran at its default size)"
    print(f"[benchmarks] {b.name}: {' '.join(cmd[2:])} (budget {b.budget_s} s, limit {timeout_s:.0f} s)", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    stdout_tail: collections.deque = collections.deque(maxlen=5)
    stderr_tail: collections.deque = collections.deque(maxlen=5)
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, sys.stdout, f"  [{b.name}] ", stdout_tail), daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, sys.stderr, f"  [{b.name}] ", stderr_tail), daemon=True)]
    for t in pumps:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop(proc)
    for t in pumps:
        t.join(timeout=10)
    wall = time.perf_counter() - t0
    section = out.read_text() if out.is_file() else ""
    reason = next((line.strip() for line in reversed(stderr_tail) if line.strip()), None) \
        or next((line.strip() for line in reversed(stdout_tail) if line.strip()), "no output")
    if timed_out:
        status = f"failed: ran past its {timeout_s:.0f} s limit, stopped; last line: {reason}"
    elif proc.returncode != 0:
        status = f"failed: exit {proc.returncode}: {reason}"
    elif not section.strip():
        status = f"failed: exit 0 but wrote no report to --out; last line: {reason}"
    else:
        status = "ok"
    return Outcome(b, status + (size_note if status == "ok" else ""), wall, section)


def _stop(proc: subprocess.Popen) -> None:
    """TERM, then KILL, the benchmark's own process group (started with a new session)."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def demote(markdown: str) -> str:
    """Every heading one level down (outside code fences), to sit under the summary's title."""
    lines, fenced = [], False
    for line in markdown.rstrip("\n").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        lines.append("#" + line if not fenced and line.startswith("#") else line)
    return "\n".join(lines)


def render(cmd: str, quick: bool, total_s: float, facts: list[tuple[str, str]], outcomes: list[Outcome]) -> str:
    size = "quick sizes (`--full` for the long ones)" if quick else "full sizes"
    table = markdown_table(["benchmark", "what", "status", "wall s", "budget s"], "lllrr", [
        [f"`{o.bench.name}`", o.bench.what, o.status, f"{o.wall_s:.0f}" if o.wall_s is not None else "—",
         str(o.bench.budget_s)] for o in outcomes])
    lines = ["# grpolab benchmarks", "", f"`{cmd}`: {size}; total wall time **{total_s:.0f} s** "
             f"({total_s / 60:.1f} min)", "", *bullets(facts), "", table]
    for o in outcomes:
        if o.section.strip():
            lines += ["", demote(o.section)]
    return "\n".join(lines) + "\n"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    names = [b.name for b in BENCHES]
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="each benchmark's --quick size (the default)")
    size.add_argument("--full", action="store_true", help="each benchmark's default, longer size")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the summary (default %(default)s)")
    p.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=f"run only these, of {', '.join(names)}")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help=f"time limit per benchmark (default: twice its budget; {FULL_TIMEOUT_S} s with --full)")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    quick = not args.full

    chosen = [b for b in BENCHES if not args.only or b.name in args.only]
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    print(f"[benchmarks] {len(chosen)} benchmarks, {'quick' if quick else 'full'} sizes: "
          f"{', '.join(b.name for b in chosen)}", flush=True)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="grpolab-bench-") as workdir:
        for i, b in enumerate(chosen, 1):
            limit = args.timeout or (2 * b.budget_s if quick else FULL_TIMEOUT_S)
            print(f"[benchmarks] {i}/{len(chosen)} {b.name} (elapsed {time.perf_counter() - t_start:.0f} s)",
                  flush=True)
            o = run_one(b, quick, limit, Path(workdir))
            outcomes.append(o)
            took = f" in {o.wall_s:.0f} s" if o.wall_s is not None else ""
            print(f"[benchmarks] {b.name}: {o.status}{took} (elapsed {time.perf_counter() - t_start:.0f} s)",
                  flush=True)
    total = time.perf_counter() - t_start
    facts = environment() + [load_fact(load_start), date_fact()]
    summary = render(command_line("python -m benchmarks", argv), quick, total, facts, outcomes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(summary)
    print(f"\n[benchmarks] total {total:.0f} s ({total / 60:.1f} min); wrote {args.out}")
    for o in outcomes:
        print(f"  {o.bench.name}: {o.status}" + (f" ({o.wall_s:.0f} s)" if o.wall_s is not None else ""))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
