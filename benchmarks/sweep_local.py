"""``sweep_overhead`` with the local launcher: submitting a 100-cell sweep, and job start to first step.

The local launcher has no ``--detach`` (its cells are child processes of the command), so the
submission gets two figures: ``grpolab sweep --dry-run`` (the whole command), and, in one fresh
process (``submit_child``), the imports of ``grpolab sweep``, the plan, ``sweep.json`` and the
submissions with submitit's ``LocalExecutor`` as ``sweeps/launch_local.py`` makes them.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.sweep_common import ROOT, Row, check, fast, grpolab, last_line, med_max, read_timings, setup_s
from trainer.run_record import sweep_root


def submit_child(sweep_dir_root: str, cells: int) -> None:
    """Runs in a fresh process (``python -c``): what ``grpolab sweep`` does up to its submissions,
    timed by phase, printed as one JSON line; then builds the fast config's SFT warm start (untimed)."""
    t0 = time.perf_counter()
    import submitit

    from sweeps.job import CellJob
    from sweeps.plan import make_plan
    from sweeps.plan_owner import claim

    t_imports = time.perf_counter()
    overrides = [*fast(Path(sweep_dir_root)), "sweep.id=submit", f"seed=range(0,{cells})"]
    plan = make_plan(overrides)
    t_plan = time.perf_counter()
    claim(plan, ["grpolab", "sweep", *overrides])
    t_written = time.perf_counter()
    executor = submitit.LocalExecutor(folder=str(plan.sweep_dir / "logs" / "%j"))  # as launch_local
    executor.update_parameters(timeout_min=24 * 60)
    executor._throttling = 0.0  # submitit's 0.2 s minimum between two submissions: reported apart
    submits = []
    for run in plan.to_run:
        s0 = time.perf_counter()
        job = executor.submit(CellJob(run.cfg, str(plan.paths.run(run.name)), plan.meta_for(run)))
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

    # the child loads the benchmark's own modules first (sweep_overhead's imports are not grpolab sweep's)
    code = ("import sys; import benchmarks.sweep_overhead; from benchmarks.sweep_local import submit_child as f; "
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


def local_cells(tmp: Path, k: int) -> list[Row]:
    args = ["sweep", *fast(tmp), "sweep.id=start", f"seed=range(0,{k})", "launcher.max_parallel=1"]
    out, wall = grpolab(*args)
    check(out, "local sweep")
    ts = read_timings(sweep_root(tmp / "out", "start"))
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
            notes=f"{lives:.1f} s inside the cells' processes; the other {wall - lives:.1f} s is the command's own "
                  "start, plan, polling for finished cells (every 1 s) and the table"),
    ]


