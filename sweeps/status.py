"""Where a sweep's cells stand: each cell's run record joined with the scheduler's view of its job.

The run record (``summary.json``) is the truth about training; for SLURM sweeps, ``jobs.json``
({run name: [job ids, newest last]}, written at submit) names each cell's jobs, and ``squeue``
(live jobs) and ``sacct`` (finished ones) say what became of them, so ``grpolab status`` and a
re-run of the sweep command can tell completed, queued, failed and missing cells apart. A local
sweep has no ``jobs.json``: its cells are read from their records alone.

A record says ``running`` only while its process lives: a ``running`` summary whose ``pid`` is gone
from this host (or is another process's now), or, from another host, whose ``heartbeat`` is older
than ``stale_after_s`` (and no scheduler reports its job), is a ``dead`` cell, with a detail saying
whether a re-run resumes it from a checkpoint and the command that re-runs it. Damaged record files
(``trainer.record_check``) are read as absent and said so, never raised.

Stdlib and ``trainer.run_record`` only (no torch, no Hydra): ``grpolab status`` stays fast.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Optional

from sweeps.run_logs import latest_log
from trainer.record_check import read_checked, warn
from trainer.run_record import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    META_FILE,
    SUMMARY_FILE,
    RunRecord,
    RunStatus,
    Summary,
    SweepPaths,
    atomic_write_json,
    read_json_object,
)

# SLURM job states (``squeue``/``sacct``), not run statuses: a job in one of these will still run
# or is running; ``STARTED`` ones are on a node.
ACTIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                    "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"})
STARTED = frozenset({"RUNNING", "COMPLETING", "CONFIGURING"})
# A `running` record seen from another host is dead once its heartbeat is older than this many of its
# mean step times, and never sooner than the floor (a model load, a warm start another cell is
# building, a long eval: a live run may write nothing for that long).
STALE_STEPS = 10
STALE_FLOOR_S = 900.0


class CellState(str, Enum):
    """A sweep cell's state: its run's status joined with its job's (not a ``RunStatus``)."""

    pending = "pending"  # not started: never submitted, or queued
    running = RunStatus.running.value
    completed = RunStatus.completed.value
    failed = RunStatus.failed.value  # the run failed, or its job ended without a completed record
    preempted = RunStatus.preempted.value  # checkpointed; resumes when requeued or re-run
    missing = RunStatus.missing.value  # jobs were submitted, but this cell has neither a job nor a record
    dead = "dead"  # its record says running, but its process is gone (killed, or its node lost)

    def __str__(self) -> str:
        return self.value


# ---------------------------------------------------------------- job bookkeeping (jobs.json)
def read_jobs(sweep_dir: str | Path) -> dict[str, list[str]]:
    """{run name: job ids, newest last}; {} when the sweep submitted nothing (or the file is unreadable);
    entries that are not a list of ids are left out, with a warning."""
    path = SweepPaths(Path(sweep_dir)).jobs
    jobs = read_json_object(path) or {}
    good = {k: [str(i) for i in v] for k, v in jobs.items()
            if isinstance(v, list) and all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in v)}
    if len(good) < len(jobs):
        bad = ", ".join(sorted(set(jobs) - set(good)))
        warn(path, f"the job ids of {bad} are not lists of ids", "those cells have no job")
    return good


def write_jobs(sweep_dir: str | Path, jobs: dict[str, list[str]]) -> None:
    atomic_write_json(SweepPaths(Path(sweep_dir)).jobs, jobs)


def _run(cmd: list[str], timeout: float = 30) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout if out.returncode == 0 else ""


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """{job id: SLURM state} for array tasks ``<array>_<i>`` (and plain jobs): live ones from
    ``squeue`` (pending tasks expanded), finished ones from ``sacct``. Unknown ids are absent."""
    if not job_ids:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    states: dict[str, str] = {}
    for line in _run(["sacct", "-n", "-P", "-X", "-j", ",".join(arrays), "-o", "JobID,State"]).splitlines():
        jid, _, state = line.partition("|")
        if "[" not in jid and state:
            states[jid] = state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    for line in _run(["squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i|%T"]).splitlines():
        jid, _, state = line.partition("|")
        if state:
            states[jid] = state.strip()
    return states


# ---------------------------------------------------------------- cells
@dataclass
class CellStatus:
    name: str
    swept: dict
    state: CellState
    steps_done: int
    steps_total: int
    job_id: Optional[str]
    detail: str = ""
    ended: bool = False  # nothing will change this cell any more without a new submission


# ---------------------------------------------------------------- is a running record's process alive?
def checkpoint_step(run_dir: str | Path) -> Optional[int]:
    """The step of the run's latest complete checkpoint (``checkpoint/latest``), or None."""
    root = Path(run_dir) / CHECKPOINT_DIR
    try:
        name = (root / "latest").read_bytes().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    digits = name.removeprefix("step_")
    return int(digits) if digits.isdigit() and (root / name / "trainer_state.pt").is_file() else None


def _started_at(pid: int) -> Optional[float]:
    """When process ``pid`` of this host started (Unix time; 0.0 when unknown), or None when there is
    no such live process (a zombie is dead)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
    except FileNotFoundError:
        return None
    except (OSError, IndexError, ValueError, StopIteration):  # no /proc: ask the kernel whether it exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            pass
        return 0.0
    return None if fields[0] in ("Z", "X") else btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def process_alive(summary: Summary) -> bool:
    """A ``running`` record whose writer is known to live: it names its process, and that process
    is not gone (``process_gone``). A re-run must not start a second writer of it."""
    return summary.status == RunStatus.running and summary.pid is not None and process_gone(summary) is None


def stale_after_s(summary: Summary) -> float:
    """How old a running record's heartbeat may be before another host calls it dead."""
    steps, wall = summary.steps_completed, summary.wall_time_s
    return max(STALE_FLOOR_S, STALE_STEPS * wall / steps if steps and wall else 0.0)


def process_gone(summary: Summary, now: Optional[float] = None) -> Optional[str]:
    """Why the process of a ``running`` record is known to be dead, or None (it lives, or there is no
    telling: a record written before records had a pid and a heartbeat)."""
    where = f"process {summary.pid} on {summary.host}"
    if summary.host == socket.gethostname() and summary.pid:
        started = _started_at(summary.pid)
        if started is None:
            return f"its {where} is gone"
        if summary.heartbeat is not None and started > summary.heartbeat + 2:
            return f"its {where} is gone (the pid is another process's now)"
        return None
    if summary.heartbeat is None:
        return None
    age, bound = (now or time.time()) - summary.heartbeat, stale_after_s(summary)
    return f"no heartbeat from its {where} for {age:.0f} s (> {bound:.0f} s)" if age > bound else None


def dead_state(summary: Summary, run_dir: Optional[str | Path], why: str, rerun: str = "the sweep command"
               ) -> tuple[CellState, str]:
    """(dead, what a re-run does) of a run whose process died without a final record."""
    ckpt = checkpoint_step(run_dir) if run_dir is not None else None
    then = f"resumes it from its checkpoint at step {ckpt}" if ckpt is not None else "starts it again (no checkpoint)"
    return CellState.dead, f"{why} after step {summary.steps_completed}; re-running {rerun} {then}"


def mark_dead(run_dir: str | Path, summary: Summary, why: str) -> Summary:
    """Write down that a ``running`` record's process died (the launcher that saw it end does this):
    ``preempted`` when a checkpoint is there to resume, else ``failed``."""
    _, detail = dead_state(summary, run_dir, why)
    summary.status = RunStatus.preempted if checkpoint_step(run_dir) is not None else RunStatus.failed
    summary.error = {"step": summary.steps_completed, "cause": detail}
    RunRecord(run_dir).write_summary(summary)
    return summary


# ---------------------------------------------------------------- cells
def cell_state(summary: Optional[Summary], slurm_state: Optional[str],
               run_dir: Optional[str | Path] = None, rerun: str = "the sweep command") -> tuple[CellState, str]:
    """(state, detail) of one cell from its run record and the state SLURM reports for its job;
    ``rerun`` is the command a detail tells the user to run again."""
    status = summary.status if summary is not None else None
    if status == RunStatus.completed:
        return CellState.completed, ""
    if slurm_state in STARTED:
        if status == RunStatus.preempted:
            return CellState.preempted, "checkpointed, stopping"
        return CellState.running, ""
    if slurm_state in ACTIVE:
        if status == RunStatus.preempted:
            return CellState.preempted, f"requeued ({slurm_state.lower()}), resumes from its checkpoint"
        return CellState.pending, slurm_state.lower()
    if status == RunStatus.failed:
        lines = str((summary.error or {}).get("cause", "")).strip().splitlines()
        return CellState.failed, lines[-1][:200] if lines else ""  # an error's last line says what it was
    if status == RunStatus.preempted:
        ckpt = checkpoint_step(run_dir) if run_dir is not None else None
        at = f" from its checkpoint at step {ckpt}" if ckpt is not None else ""
        return CellState.preempted, (f"job {slurm_state.lower() if slurm_state else 'gone'}; re-run the sweep "
                                     f"to resume{at}: {rerun}")
    if slurm_state:  # job ended without a completed record: killed, out of memory, time limit, ...
        return CellState.failed, f"job {slurm_state.lower()}"
    if status == RunStatus.running:  # a local run, or a job SLURM no longer reports: is its process alive?
        why = process_gone(summary)
        return dead_state(summary, run_dir, why, rerun) if why else (CellState.running, "")
    return CellState.missing, ""


def sweep_status(sweep_dir: str | Path) -> list[CellStatus]:
    """Every planned cell of the sweep in ``sweep_dir``, in plan order."""
    paths = SweepPaths(Path(sweep_dir))
    jobs = read_jobs(paths.root)
    latest = {name: ids[-1] for name, ids in jobs.items() if ids}
    states = slurm_states(list(latest.values()))
    runs, rerun = _planned_runs(paths)
    out = []
    for run in runs:
        name = run["name"]
        summary, problem = _read_summary(paths.run(name))
        job_id = latest.get(name)
        slurm_state = states.get(job_id) if job_id else None
        state, detail = cell_state(summary, slurm_state, paths.run(name), rerun)
        if job_id is None and summary is None:
            state = CellState.missing if jobs else CellState.pending
        if problem and state in (CellState.pending, CellState.missing):  # damaged, and no job will rewrite it
            ckpt = checkpoint_step(paths.run(name))
            state, detail = CellState.failed, f"{SUMMARY_FILE} {problem}; re-running {rerun} " + (
                f"resumes it from its checkpoint at step {ckpt}" if ckpt is not None else "starts it again")
        if state in (CellState.failed, CellState.dead) and job_id is None:  # a local cell: where its log is
            log = latest_log(paths.root, name)
            detail = f"{detail}; log {log}" if log is not None else detail
        ended = state in (CellState.completed, CellState.failed, CellState.missing, CellState.dead) or (
            state == CellState.preempted and slurm_state not in ACTIVE)
        out.append(CellStatus(name, run["swept"], state, summary.steps_completed if summary else 0,
                              run["steps"], job_id, detail, ended))
    return out


def _read_summary(run_dir: Path) -> tuple[Optional[Summary], Optional[str]]:
    """(the summary or None, what is wrong with ``summary.json`` when it is there but unreadable)."""
    data, problem = read_checked(run_dir / SUMMARY_FILE, Summary)
    summary = Summary.from_json(data) if data is not None else None
    if data is not None and summary is None:
        problem = f"has status {data.get('status')!r}, not a run status"
    return summary, problem


def _planned_runs(paths: SweepPaths) -> tuple[list[dict], str]:
    """(the plan's runs as ``{name, swept, steps}``, the command that re-runs the sweep, quoted).
    When ``sweep.json`` is damaged, the run dirs there are the cells (with a warning), so they can
    still be seen."""
    plan, problem = read_checked(paths.plan)
    if plan is None and problem is None and paths.runs.is_dir():
        tune = _tune_runs(paths)
        if tune is not None:
            return tune, "the tune command (grpolab tune with the same overrides)"
    runs = plan.get("runs") if plan is not None else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in runs):
        warn(paths.plan, problem or "its runs are not a list of {name, swept, steps}",
             "cells are listed from runs/ (re-running the sweep command writes the plan again)")
        names = sorted(d.name for d in paths.runs.iterdir() if d.is_dir()) if paths.runs.is_dir() else []
        runs = [{"name": n} for n in names]
    command = plan.get("command") if plan is not None else None
    rerun = f"`{shlex.join(command)}`" if isinstance(command, list) and all(isinstance(c, str) for c in command) \
        else "the sweep command"
    return [{"name": r["name"], "swept": r.get("swept") if isinstance(r.get("swept"), dict) else {},
             "steps": r.get("steps") if isinstance(r.get("steps"), int) and r.get("steps") >= 0 else 0}
            for r in runs], rerun


def _tune_runs(paths: SweepPaths) -> Optional[list[dict]]:
    """The runs of a ``grpolab tune`` dir (no plan: ``runs/t<trial>_s<seed>``, each meta naming its
    trial) as ``{name, swept, steps}``, or None when a run dir there is no tune run."""
    import yaml  # only for plan-less dirs: the planned steps are in each run's config.yaml

    runs = []
    for run_dir in sorted(d for d in paths.runs.iterdir() if d.is_dir()):
        meta, _ = read_checked(run_dir / META_FILE)
        if not meta or not isinstance(meta.get("tune"), dict):
            return None
        try:
            steps = int(((yaml.safe_load((run_dir / CONFIG_FILE).read_text()) or {}).get("train") or {})["steps"])
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
            steps = 0
        swept = {**(meta.get("swept") or {}), "seed": meta.get("seed")}
        runs.append({"name": run_dir.name, "swept": swept, "steps": steps})
    return runs or None


def format_status(sweep_id: str, cells: list[CellStatus]) -> str:
    """One headline (cells per state, steps done) and one line per cell."""
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.state.value] = counts.get(c.state.value, 0) + 1
    done = sum(c.steps_total if c.state == CellState.completed else c.steps_done for c in cells)
    total = sum(c.steps_total for c in cells) or 1
    lines = [f"sweep {sweep_id}: {len(cells)} cells: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
             + f"; {done}/{total} steps ({100 * done / total:.0f}%)"]
    for c in cells:
        swept = " ".join(f"{k}={v}" for k, v in c.swept.items())
        lines.append(f"  {c.state.value:<9} {c.name}  {c.steps_done}/{c.steps_total}  job {c.job_id or '-'}  {swept}"
                     + (f"  ({c.detail})" if c.detail else ""))
    return "\n".join(lines)
