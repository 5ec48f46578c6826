"""Run a sweep's cells on this machine: each in its own process via submitit's LocalExecutor
(the same Job API the SLURM launcher uses), ``launcher.max_parallel`` at a time, with progress.

Progress is read from the run records themselves (lines in ``metrics.jsonl``), so it shows the
same truth the table will be built from. A cell whose run dir another process holds (a second
``grpolab sweep`` of the same sweep, ``trainer.locks``) is not run twice: this one waits for that
process to end and reports the cell's status; if it stopped without ending (preempted), it runs the
cell here, resuming from its checkpoint. Each job starts with
``launcher.env`` in its environment, and its files are its owner's only (``sweeps.job_env``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import submitit
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sweeps.job import Busy, CellJob
from sweeps.job_env import job_environment, private_files
from sweeps.plan import SweepPlan
from trainer.locks import run_is_locked
from trainer.run_record import RunRecord, RunStatus, Summary
from trainer.secrets import redact_value

_EXITED = ("FINISHED", "COMPLETED")  # submitit's states of a job whose process returned normally
_RESUMABLE = (RunStatus.preempted, RunStatus.running, RunStatus.missing)  # stopped without an ending


def _steps_done(run_dir: Path) -> int:
    try:
        with open(RunRecord(run_dir, writable=False).metrics_path) as f:
            return max(sum(1 for _ in f) - 1, 0)  # line 0 is the warm-start eval
    except FileNotFoundError:
        return 0


def _is_busy(job: submitit.Job) -> bool:
    """Whether the cell's process found its run dir held by another one (``sweeps.job.Busy``)."""
    try:
        return isinstance(job.result(), Busy)
    except Exception:  # a failed job: its record says why
        return False


def launch_local(plan: SweepPlan, console: Console | None = None, poll_s: float = 1.0) -> dict[str, RunStatus]:
    """Run every pending cell; return {run name: final status}."""
    console = console or Console(stderr=True)
    if not plan.to_run:
        return {}
    with private_files():
        return _launch(plan, console, poll_s)


def _launch(plan: SweepPlan, console: Console, poll_s: float) -> dict[str, RunStatus]:
    runs = plan.to_run
    parallel = runs[0].cfg.launcher.max_parallel
    executor = submitit.LocalExecutor(folder=str(plan.paths.logs / "%j"))
    executor.update_parameters(timeout_min=24 * 60)
    total_steps = sum(r.cfg.train.steps for r in runs)
    queue = list(runs)
    active: dict[str, tuple[submitit.Job, Path]] = {}
    statuses: dict[str, RunStatus] = {}
    waiting: dict[str, Path] = {}  # cells another process holds (trainer.locks): their end is awaited
    retried: set[str] = set()
    interactive = console.is_terminal
    last_print = 0.0
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not interactive,
    ) as progress:
        bar = progress.add_task(f"sweep {plan.sweep_id}: steps", total=total_steps)
        while queue or active or waiting:
            while queue and len(active) < parallel:
                run = queue.pop(0)
                run_dir = plan.paths.run(run.name)
                with job_environment(run.cfg.launcher.env):
                    job = executor.submit(CellJob(run.cfg, str(run_dir), plan.meta_for(run)))
                active[run.name] = (job, run_dir)
                swept = ", ".join(f"{k}={redact_value(k, v)}" for k, v in run.swept.items())
                console.print(f"[start] {run.name}  {swept}", markup=False)
            for name, run_dir in list(waiting.items()):
                if not run_is_locked(run_dir):  # the other process let go: its record is final
                    del waiting[name]
                    status = RunRecord.peek_status(run_dir) or RunStatus.missing
                    if status in _RESUMABLE and name not in retried:  # it stopped, not ended: run it here
                        retried.add(name)
                        queue.append(next(r for r in runs if r.name == name))
                        continue
                    statuses[name] = status
                    console.print(f"[{status}] {name}  ({len(statuses)}/{len(runs)} done) by another process",
                                  markup=False)
            for name, (job, run_dir) in list(active.items()):
                if job.done() and _is_busy(job):
                    del active[name]
                    waiting[name] = run_dir
                    console.print(f"[busy] {name}  another process is running it; waiting for it to end",
                                  markup=False)
                elif job.done():
                    summary = RunRecord.peek_summary(run_dir) or Summary(status=RunStatus.failed)
                    status = summary.status
                    if job.state not in _EXITED and status == RunStatus.running:
                        status = RunStatus.failed
                    statuses[name] = status
                    del active[name]
                    acc = summary.final_eval_accuracy
                    extra = f"eval accuracy {acc:.3f}" if isinstance(acc, float) else f"see {job.paths.stderr}"
                    console.print(f"[{status}] {name}  ({len(statuses)}/{len(runs)} done) {extra}", markup=False)
            done_steps = sum(r.cfg.train.steps for r in runs if r.name in statuses) + sum(
                _steps_done(d) for _, d in active.values()
            )
            progress.update(bar, completed=done_steps)
            if not interactive and time.time() - last_print > 30 and active:
                last_print = time.time()
                print(f"[progress] {done_steps}/{total_steps} steps, {len(statuses)}/{len(runs)} cells done",
                      file=sys.stderr, flush=True)
            time.sleep(poll_s)
    return statuses
