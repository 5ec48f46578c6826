"""Sweep overheads: what a sweep costs around its training steps (issue 7, item 4).

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
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny model is local; any hub access is a bug
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.machine import code_version_text, cpu_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "sweep_overhead.md"
CACHE = ROOT / ".cache" / "grpolab"  # the default paths.cache_dir: fast-config warm starts are built once, then reused
SLURM_START_HINT = "bash slurm/start.sh"


@dataclass(frozen=True)
class Sizes:
    cells: int  # cells of the submitted sweep
    local_cells: int  # tiny cells run through the local launcher for the timing block
    slurm_cells: int  # same, through SLURM
    table_repeats: int


QUICK = Sizes(cells=100, local_cells=2, slurm_cells=2, table_repeats=3)
FULL = Sizes(cells=100, local_cells=4, slurm_cells=4, table_repeats=5)


@dataclass
class Row:
    what: str
    result: str
    goal: str = "—"
    notes: str = ""
    failed: bool = False


# ---------------------------------------------------------------- helpers
def fast(tmp: Path, steps: int = 2) -> list[str]:
    """The tests' seconds-long config (tests/conftest.py), with its SFT warm start in the shared cache."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import fast_overrides

    return [*fast_overrides(tmp, steps=steps), f"paths.cache_dir={CACHE}"]


def grpolab(*args: str, env: Optional[dict] = None, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    """``grpolab ARGS`` as a fresh process (``python -m sweeps.cli``); (result, wall seconds)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    return out, time.perf_counter() - t0


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def check(out: subprocess.CompletedProcess, what: str) -> None:
    if out.returncode != 0:
        raise RuntimeError(f"{what}: exit {out.returncode}: {last_line(out.stderr or out.stdout)}")


def med_max(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} s, max {max(xs):.2f} s"


# ---------------------------------------------------------------- 1. submission, local launcher
def _local_submit_child(sweep_dir_root: str, cells: int) -> None:
    """Runs in a fresh process (``python -c``): what ``grpolab sweep`` does up to its submissions,
    timed by phase, printed as one JSON line; then builds the fast config's SFT warm start (untimed)."""
    t0 = time.perf_counter()
    import submitit

    from sweeps.job import CellJob
    from sweeps.plan import make_plan, write_plan

    t_imports = time.perf_counter()
    overrides = [*fast(Path(sweep_dir_root)), "sweep.id=submit", f"seed=range(0,{cells})"]
    plan = make_plan(overrides)
    t_plan = time.perf_counter()
    write_plan(plan, ["grpolab", "sweep", *overrides])
    t_written = time.perf_counter()
    executor = submitit.LocalExecutor(folder=str(plan.sweep_dir / "logs" / "%j"))  # as launch_local
    executor.update_parameters(timeout_min=24 * 60)
    executor._throttling = 0.0  # submitit's 0.2 s minimum between two submissions: reported apart
    submits = []
    for run in plan.to_run:
        s0 = time.perf_counter()
        job = executor.submit(CellJob(run.cfg, str(plan.sweep_dir / "runs" / run.name), plan.meta_for(run)))
        submits.append(time.perf_counter() - s0)
        job._process.kill()  # the cell must not run: this measures submission only
        job._process.wait()
    print(json.dumps({"imports_s": t_imports - t0, "plan_s": t_plan - t_imports, "write_plan_s": t_written - t_plan,
                      "submits_s": submits, "runs": len(plan.runs)}), flush=True)
    from trainer.sft import warm_start_dir
    from trainer.tasks import build_task

    cfg = plan.runs[0].cfg
    warm_start_dir(cfg, build_task(cfg.task), log=lambda *a: None)


def local_submission(tmp: Path, cells: int) -> list[Row]:
    rows = []
    args = ["sweep", "--dry-run", *fast(tmp / "dry"), "sweep.id=dry", f"seed=range(0,{cells})"]
    out, wall = grpolab(*args)
    check(out, "grpolab sweep --dry-run")
    if f"{cells} runs" not in out.stdout:
        raise RuntimeError(f"dry run did not list {cells} runs: {last_line(out.stdout)}")
    rows.append(Row(f"{cells}-cell sweep, local launcher: `grpolab sweep --dry-run` (whole command)", f"{wall:.2f} s",
                    "< 10 s", "Python start, imports, compose and validate every cell, list them"))

    code = ("import sys; from benchmarks.sweep_overhead import _local_submit_child as f; "
            "f(sys.argv[1], int(sys.argv[2]))")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp / "submit"), str(cells)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    wall = time.perf_counter() - t0  # process start -> the 100th submission returned
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0 or not line.strip():
        raise RuntimeError(f"local submission: exit {proc.returncode}: {last_line(err)}")
    t = json.loads(line)
    per = t["submits_s"]
    rows.append(Row(
        f"{cells}-cell sweep, local launcher: Python start → plan → `sweep.json` → {cells} `LocalExecutor` submissions",
        f"{wall:.2f} s", "< 10 s",
        f"imports {t['imports_s']:.2f} s, plan {t['plan_s']:.2f} s, sweep.json {t['write_plan_s']:.2f} s, "
        f"submissions {sum(per):.2f} s ({statistics.median(per) * 1e3:.0f} ms/cell median: pickle + spawn). "
        "The local launcher has no `--detach`: it submits `launcher.max_parallel` cells at a time as slots "
        "free up; submitit's 0.2 s minimum between submissions is excluded (back to back it would add "
        f"{0.2 * (cells - 1):.0f} s)"))
    return rows


# ---------------------------------------------------------------- 2. job start to first step
def read_timings(sweep_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(sweep_dir.glob("runs/*/summary.json")):
        s = json.loads(path.read_text())
        if s.get("status") == "completed" and s.get("timing"):
            rows.append({**s["timing"], "wall_time_s": s.get("wall_time_s", 0.0)})
    return rows


def setup_s(t: dict) -> float:
    """Run start to first step, without model load, the warm-start eval and a checkpoint load."""
    return t["run_to_first_step_s"] - t["model_load_s"] - t.get("warm_eval_s", 0.0) - t.get("checkpoint_load_s", 0.0)


def local_cells(tmp: Path, k: int) -> list[Row]:
    args = ["sweep", *fast(tmp), "sweep.id=start", f"seed=range(0,{k})", "launcher.max_parallel=1"]
    out, wall = grpolab(*args)
    check(out, "local sweep")
    ts = read_timings(tmp / "out" / "sweeps" / "start")
    if len(ts) != k:
        raise RuntimeError(f"local sweep: {len(ts)} of {k} cells have a completed record with timings")
    start = [t["process_start_to_run_s"] - t["job_imports_s"] for t in ts]
    total = [t["process_start_to_run_s"] + setup_s(t) for t in ts]
    lives = sum(t["process_start_to_run_s"] + t["wall_time_s"] for t in ts)
    return [
        Row(f"job start → first step, local launcher ({k} tiny cells, one at a time)", med_max(total), "< 3 s",
            f"excluding model load ({med_max([t['model_load_s'] for t in ts])}) and the warm-start eval "
            f"({med_max([t.get('warm_eval_s', 0.0) for t in ts])}); of it: Python start + submitit + unpickling "
            f"{med_max(start)}, imports of torch/transformers/trainer {med_max([t['job_imports_s'] for t in ts])}, "
            f"run setup {med_max([setup_s(t) for t in ts])}"),
        Row(f"local sweep of {k} tiny cells (2 steps each), one at a time: whole command", f"{wall:.1f} s",
            notes=f"{lives:.1f} s inside the cells' processes; the other {wall - lives:.1f} s is the command's own start, "
                  "plan, polling for finished cells (every 1 s) and the table"),
    ]


# ---------------------------------------------------------------- SLURM (local test cluster)
def slurm_env() -> dict:
    """The environment of the test cluster, as tests/test_slurm.py finds it (slurm/env.sh decides where it lives)."""
    out = subprocess.run(["bash", "-c", f"source {ROOT / 'slurm' / 'env.sh'}; echo $GRPOLAB_SLURM_DIR"],
                         capture_output=True, text=True, check=True)
    d = Path(out.stdout.strip())
    return {**os.environ, "GRPOLAB_SLURM_DIR": str(d), "SLURM_CONF": str(d / "etc" / "slurm.conf")}


def cluster_up(env: dict) -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s.strip() in ("idle", "mix", "alloc") for s in out.stdout.split())


def start_cluster(env: dict) -> tuple[bool, str]:
    """(started here, why not) after trying ``slurm/start.sh`` as the tests do."""
    if os.geteuid() != 0:
        return False, "slurm/start.sh needs root"
    if not shutil.which("slurmctld"):
        return False, "SLURM packages missing (slurm/install.sh)"
    try:
        out = subprocess.run(["bash", str(ROOT / "slurm" / "start.sh")], env=env, capture_output=True, text=True,
                             timeout=300)
    except subprocess.TimeoutExpired:
        return False, "slurm/start.sh timed out after 300 s"
    if out.returncode != 0 or not cluster_up(env):
        return False, f"slurm/start.sh: {last_line(out.stderr or out.stdout)}"
    return True, ""


def slurm_measure_module():
    """``slurm/measure.py`` (not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location("grpolab_slurm_measure", ROOT / "slurm" / "measure.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def slurm_submission(tmp: Path, cells: int) -> Row:
    tmp.mkdir(parents=True, exist_ok=True)
    saved, tempfile.tempdir = tempfile.tempdir, str(tmp)  # submit_time's mkdtemp: inside our tmp, removed after
    try:
        elapsed = slurm_measure_module().submit_time(cells)
    except SystemExit as e:  # measure.py exits with the command's stderr
        raise RuntimeError(f"grpolab sweep --detach launcher=slurm_local: {last_line(str(e.code))}") from None
    finally:
        tempfile.tempdir = saved
    return Row(f"{cells}-cell sweep, `launcher=slurm_local --detach` (whole command, then `scancel`)",
               f"{elapsed:.2f} s", "< 10 s", "one job array; `slurm/measure.py`'s `submit_time`")


def slurm_cells(tmp: Path, k: int, env: dict, timeout_s: int) -> Row:
    sweep = tmp / "out" / "sweeps" / "start"
    out, _ = grpolab("sweep", *fast(tmp), "launcher=slurm_local", "sweep.id=start", f"seed=range(0,{k})", "--detach",
                     env=env)
    check(out, "grpolab sweep --detach launcher=slurm_local")
    out, _ = grpolab("collect", str(sweep), "--poll", "1", "--timeout", str(timeout_s), env=env, timeout=timeout_s + 60)
    ts = [t for t in read_timings(sweep) if "job_start_to_call_s" in t]
    if out.returncode != 0 or len(ts) != k:
        logs = sorted(sweep.glob("logs/*/*.err"))
        tail = f"; {logs[-1].parent.name}'s stderr: {last_line(logs[-1].read_text())}" if logs else ""
        raise RuntimeError(f"SLURM sweep: {len(ts)} of {k} cells completed with job timings "
                           f"(collect exit {out.returncode}: {last_line(out.stderr or out.stdout)}){tail}")
    total = [t["job_start_to_call_s"] + t["job_imports_s"] + setup_s(t) for t in ts]
    return Row(f"job start → first step, SLURM ({k} tiny cells, `slurm_local`: 2 at a time on the 2 cores)",
               med_max(total), "< 3 s",
               f"from the sbatch script's first line; excluding model load ({med_max([t['model_load_s'] for t in ts])}) "
               f"and the warm-start eval; of it: srun + Python start + unpickling "
               f"{med_max([t['job_start_to_call_s'] for t in ts])}, imports {med_max([t['job_imports_s'] for t in ts])}, "
               f"run setup {med_max([setup_s(t) for t in ts])} (`slurm/measure.py`'s split)")


def slurm_rows(tmp: Path, sizes: Sizes, quick: bool) -> list[Row]:
    env = slurm_env()
    started = False
    if not cluster_up(env):
        started, why = start_cluster(env)
        if not started:
            return [Row("SLURM: submission and job start", f"skipped: SLURM cluster not up ({SLURM_START_HINT})",
                        notes=why)]
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]  # submit_time's subprocess inherits it
    try:
        rows = []
        parts = (lambda: slurm_submission(tmp / "submit", sizes.cells),
                 lambda: slurm_cells(tmp, sizes.slurm_cells, env, timeout_s=120 if quick else 300))
        for part in parts:
            try:
                rows.append(part())
            except Exception as e:  # noqa: BLE001 - one failed part must not hide the others
                rows.append(Row("SLURM", f"failed: {e}", failed=True))
        if started:
            rows[-1].notes += f" (cluster started for this run{' in --quick' if quick else ''} and stopped after)"
        return rows
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        if started:
            subprocess.run(["bash", str(ROOT / "slurm" / "stop.sh")], env=env, capture_output=True, timeout=120)


# ---------------------------------------------------------------- 3. table
def table_rows(repeats: int) -> list[Row]:
    from benchmarks.table_1000 import GOAL_S, measure, table_rows as summarize

    return [Row(f"`grpolab table` on 1,000 run records, {label}", f"median {med:.2f} s (min {lo:.2f}, max {hi:.2f})",
                f"< {GOAL_S:g} s", f"{repeats} repeats; 20 cells × 50 seeds, synthetic (`benchmarks/table_1000.py`)")
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
    sft = " (it trained the SFT warm start first: not cached yet)" if "[sft] training" in text else ""
    imp, _, _ = peak_rss([sys.executable, "-c", "import torch, transformers, trainer.run"], tmp / "imports.log")
    return [
        Row("peak RSS of a tiny run: `grpolab train train.steps=2`", f"{mib:.0f} MiB",
            notes=f"default tiny Qwen2 (0.6M parameters), 64 prompts × 8 responses, warm-start and final eval on "
                  f"200 prompts, {wall:.1f} s{sft}"),
        Row("peak RSS of the imports alone (`import torch, transformers, trainer.run`)", f"{imp:.0f} MiB",
            notes="the floor under any run's RSS"),
    ]


# ---------------------------------------------------------------- environment and report
def environment() -> list[tuple[str, str]]:
    """Environment lines without importing torch (also used by ``python -m benchmarks``)."""
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return [("python", platform.python_version()), ("torch", version("torch")),
            ("transformers", version("transformers")), ("submitit", version("submitit")),
            ("CPU", cpu_text()), ("code", code_version_text())]


def render(cmd: str, facts: list[tuple[str, str]], rows: list[Row]) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["# Sweep overheads", "", f"`{cmd}`", "", *[f"- {k}: {v}" for k, v in facts], "",
             "| measurement | result | goal | notes |", "|---|---|---|---|"]
    lines += [f"| {cell(r.what)} | {cell(r.result)} | {r.goal} | {cell(r.notes)} |" for r in rows]
    lines += ["", "Run records' `timing` block: docs/run-record.md. \"Tiny cells\" are the tests' fast config "
              "(`tests/conftest.py` `fast_overrides`, 2 steps), seeds 0, 1, ….", ""]
    return "\n".join(lines)


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
            except Exception as e:  # noqa: BLE001 - report it and go on with the rest
                new = [Row(name, f"failed: {e}", failed=True)]
            rows += new
            for r in new:
                print(f"  {r.what}: {r.result}", flush=True)
            print(f"[sweep_overhead] {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    facts = environment() + [
        ("load average (1 min)", f"{load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end"),
        ("run time", f"{time.perf_counter() - t_start:.0f} s"),
        ("date", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")),
    ]
    cmd = " ".join(["python -m benchmarks.sweep_overhead", *(sys.argv[1:] if argv is None else argv)])
    report = render(cmd, facts, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print()
    print(report)
    print(f"[sweep_overhead] wrote {args.out}")
    for r in rows:
        if r.failed:  # last on stderr: the reason `python -m benchmarks` shows
            print(f"[sweep_overhead] {r.what}: {r.result}", file=sys.stderr)
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
