"""Run a sweep's cells on this machine: each in its own process via submitit's LocalExecutor
(the same Job API the SLURM launcher uses), ``launcher.max_parallel`` at a time, with progress.

Progress is read from the run records themselves (lines in ``metrics.jsonl``; the phase a cell is
in — warm start, model load, first step — from its ``summary.json``), so it shows the same truth
the table will be built from: a ``[phase]`` line when a running cell enters a phase, and, without a
terminal (a log file, CI), a ``[progress]`` line with elapsed time and ETA when the counts changed,
at most every 30 s. Each cell logs to ``logs/<run name>/``, mapped in ``logs.json``
(``sweeps.run_logs``). Each job starts with ``launcher.env`` in its
environment, and its files are its owner's only (``sweeps.job_env``).

A cell whose run dir another process holds (a second ``grpolab sweep`` of the same sweep,
``trainer.locks``) is not run twice: this one waits for that process to end and reports the cell's
status; if it stopped without ending (preempted), it runs the cell here, resuming from its checkpoint.

Stopping a local sweep stops its cells at a step boundary, never mid-step and never orphaned:
INT, TERM, USR2 or HUP to the ``grpolab sweep`` process (Ctrl-C, ``kill``, a closed terminal) starts
no new cell and sends TERM to each running cell's submitit controller, which forwards it to the
cell's process; the cell checkpoints after its current step and ends ``preempted``, and this
command returns once every running cell has ended. The controllers are started with INT and HUP
ignored, because submitit's controller answers INT by killing its task a second later (mid-step);
a terminal's Ctrl-C still reaches the cells themselves, whose ``StopFlag`` handles it. A cell whose
process dies without a final record (SIGKILL, out of memory) is written down as dead
(``sweeps.status.mark_dead``).
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import submitit
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sweeps.job import Busy, CellJob, StopFlag
from sweeps.job_env import job_environment, private_files
from sweeps.plan import SweepPlan
from sweeps.run_logs import RunLogExecutor
from sweeps.status import mark_dead
from trainer.locks import run_is_locked
from trainer.progress import Eta, progress_text
from trainer.run_record import RunRecord, RunStatus
from trainer.secrets import redact_value

_EXITED = ("FINISHED", "COMPLETED")  # submitit's states of a job whose process returned normally
_IGNORED_BY_CONTROLLERS = (signal.SIGINT, signal.SIGHUP)
_RESUMABLE = (RunStatus.preempted, RunStatus.running, RunStatus.missing)  # stopped without an ending


@dataclass
class LocalResult:
    """{run name: final status} of the cells that ran, and the signal that stopped the sweep, if any."""

    statuses: dict[str, RunStatus] = field(default_factory=dict)
    stopped_by: str = ""  # "SIGINT", ...: the cells not started were left for a re-run
    signum: int | None = None


def _steps_done(run_dir: Path) -> int:
    try:
        with open(RunRecord(run_dir, writable=False).metrics_path) as f:
            return max(sum(1 for _ in f) - 1, 0)  # line 0 is the warm-start eval
    except FileNotFoundError:
        return 0


@contextmanager
def _ignoring(signals):
    """``signals`` ignored while a child process is started (it inherits SIG_IGN through exec)."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in signals}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _sleep_unless(seconds: float, woken, slice_s: float = 0.02) -> None:
    """Sleep up to ``seconds``, returning as soon as ``woken()`` (a stop signal arrived): a cell hears of
    a Ctrl-C within ~20 ms, not at the next poll."""
    end = time.monotonic() + seconds
    while not woken() and (left := end - time.monotonic()) > 0:
        time.sleep(min(slice_s, left))


def _forward_stop(job: submitit.Job) -> None:
    """TERM to the cell's controller, which forwards TERM to the cell's process."""
    process = getattr(job, "_process", None)
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)


def _phase(run_dir: Path) -> str:
    """The phase a running cell's summary names ("" before it wrote one, or once it ended)."""
    summary = RunRecord.peek_summary(run_dir)
    return summary.phase or "" if summary is not None and summary.status == RunStatus.running else ""


def _log_file(job: submitit.Job) -> Path:
    """The job's log that says what happened: its stderr when anything was written there, else stdout."""
    err = Path(job.paths.stderr)
    return err if err.is_file() and err.stat().st_size else Path(job.paths.stdout)


def _ended(name: str, job: submitit.Job, run_dir: Path) -> tuple[RunStatus, str]:
    """(final status, what the console line adds) of a cell whose job has ended."""
    summary = RunRecord.peek_summary(run_dir)
    if summary is None:
        return RunStatus.failed, f"no run record; see {_log_file(job)}"
    if summary.status == RunStatus.running:  # its process died without writing an end
        summary = mark_dead(run_dir, summary, f"its process ended ({job.state.lower()}) without a final record")
    if summary.status == RunStatus.completed:
        acc = summary.final_eval_accuracy
        return summary.status, f"eval accuracy {acc:.3f}" if isinstance(acc, float) else ""
    cause = str((summary.error or {}).get("cause", "")).strip().splitlines() or ["no cause recorded"]
    log = f"; log {_log_file(job)}" if summary.status == RunStatus.failed else ""
    return summary.status, f"at step {summary.steps_completed}: {cause[-1]}{log}"


def _is_busy(job: submitit.Job) -> bool:
    """Whether the cell's process found its run dir held by another one (``sweeps.job.Busy``)."""
    try:
        return isinstance(job.result(), Busy)
    except Exception:  # a failed job: its record says why
        return False


def launch_local(plan: SweepPlan, console: Console | None = None, poll_s: float = 1.0,
                 report_every_s: float = 30.0) -> LocalResult:
    """Run every pending cell, or until a stop signal; see the module docstring. ``report_every_s``:
    the least time between two ``[progress]`` lines (printed when ``console`` is not a terminal)."""
    console = console or Console(stderr=True)
    if not plan.to_run:
        return LocalResult()
    with private_files():
        return _launch(plan, console, poll_s, report_every_s)


def _launch(plan: SweepPlan, console: Console, poll_s: float, report_every_s: float) -> LocalResult:
    runs = plan.to_run
    result = LocalResult()
    parallel = runs[0].cfg.launcher.max_parallel
    executor = RunLogExecutor(plan.sweep_dir)
    total_steps = sum(r.cfg.train.steps for r in runs)
    queue = list(runs)
    active: dict[str, tuple[submitit.Job, Path]] = {}
    waiting: dict[str, Path] = {}  # cells another process holds (trainer.locks): their end is awaited
    retried: set[str] = set()
    stop = StopFlag("stopping the running cells at their next step boundary; no new cell starts")
    old_handlers = stop.install()
    forwarded = 0  # signals already passed on to the running cells
    interactive = console.is_terminal
    last_print, last_line, t0, eta = 0.0, "", time.time(), None
    phases: dict[str, str] = {}
    try:
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, disable=not interactive,
        ) as progress:
            bar = progress.add_task(f"sweep {plan.sweep_id}: steps", total=total_steps)
            while (queue and not stop()) or active or (waiting and not stop()):
                while queue and not stop() and len(active) < parallel:
                    run = queue.pop(0)
                    run_dir = plan.paths.run(run.name)
                    with _ignoring(_IGNORED_BY_CONTROLLERS), job_environment(run.cfg.launcher.env):
                        job = executor.submit(CellJob(run.cfg, str(run_dir), plan.meta_for(run)))
                    active[run.name] = (job, run_dir)
                    swept = ", ".join(f"{k}={redact_value(k, v)}" for k, v in run.swept.items())
                    console.print(f"[start] {run.name}  {swept}", markup=False, soft_wrap=True)
                if stop.count > forwarded:
                    forwarded = stop.count
                    for job, _ in active.values():
                        _forward_stop(job)
                for name, run_dir in list(waiting.items()):
                    if not run_is_locked(run_dir):  # the other process let go: its record is final
                        del waiting[name]
                        status = RunRecord.peek_status(run_dir) or RunStatus.missing
                        if status in _RESUMABLE and name not in retried:  # it stopped, not ended: run it here
                            retried.add(name)
                            queue.append(next(r for r in runs if r.name == name))
                            continue
                        result.statuses[name] = status
                        console.print(f"[{status}] {name}  ({len(result.statuses)}/{len(runs)} done) by another "
                                      "process", markup=False, soft_wrap=True)
                for name, (job, run_dir) in list(active.items()):
                    phase = _phase(run_dir)
                    if phase and phase != phases.get(name):
                        phases[name] = phase
                        console.print(f"[phase] {name}  {phase}", markup=False, soft_wrap=True)
                    if job.done() and _is_busy(job):
                        del active[name]
                        waiting[name] = run_dir
                        console.print(f"[busy] {name}  another process is running it; waiting for it to end",
                                      markup=False, soft_wrap=True)
                    elif job.done():
                        status, extra = _ended(name, job, run_dir)
                        result.statuses[name] = status
                        del active[name]
                        console.print(f"[{status}] {name}  ({len(result.statuses)}/{len(runs)} done) {extra}",
                                      markup=False, soft_wrap=True)
                done_steps = sum(r.cfg.train.steps for r in runs if r.name in result.statuses) + sum(
                    _steps_done(d) for _, d in active.values()
                )
                progress.update(bar, completed=done_steps)
                if eta is None and done_steps > 0:  # the rate counts from the first step, not the warm start
                    eta = Eta(total_steps, done_steps)
                line = f"{done_steps}/{total_steps} steps, {len(result.statuses)}/{len(runs)} cells done"
                if not interactive and time.time() - last_print >= report_every_s and active and line != last_line:
                    last_print, last_line = time.time(), line
                    console.print(f"[progress] {line}, {progress_text(time.time() - t0, eta, done_steps)}",
                                  markup=False, soft_wrap=True)
                _sleep_unless(poll_s, lambda: stop.count > forwarded)
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    if stop():
        result.stopped_by, result.signum = stop.name, stop.signum
    return result

