"""Where a sweep's cells stand: each cell's run record joined with the scheduler's view of its job.

The run record (``summary.json``) is the truth about training; for SLURM sweeps, ``jobs.json``
({run name: [job ids, newest last]}, written at submit) names each cell's jobs, and ``squeue``
(live jobs) and ``sacct`` (finished ones) say what became of them, so ``grpolab status`` and a
re-run of the sweep command can tell completed, queued, failed and missing cells apart. A local
sweep has no ``jobs.json``: its cells are read from their records alone.

Stdlib and ``trainer.run_record`` only (no torch, no Hydra): ``grpolab status`` stays fast.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Optional

from trainer.run_record import RunRecord, RunStatus, Summary, SweepPaths, atomic_write_json, read_json, read_json_object

# SLURM job states (``squeue``/``sacct``), not run statuses: a job in one of these will still run
# or is running; ``STARTED`` ones are on a node.
ACTIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                    "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"})
STARTED = frozenset({"RUNNING", "COMPLETING", "CONFIGURING"})


class CellState(str, Enum):
    """A sweep cell's state: its run's status joined with its job's (not a ``RunStatus``)."""

    pending = "pending"  # not started: never submitted, or queued
    running = RunStatus.running.value
    completed = RunStatus.completed.value
    failed = RunStatus.failed.value  # the run failed, or its job ended without a completed record
    preempted = RunStatus.preempted.value  # checkpointed; resumes when requeued or re-run
    missing = RunStatus.missing.value  # jobs were submitted, but this cell has neither a job nor a record

    def __str__(self) -> str:
        return self.value


# ---------------------------------------------------------------- job bookkeeping (jobs.json)
def read_jobs(sweep_dir: str | Path) -> dict[str, list[str]]:
    """{run name: job ids, newest last}; {} when the sweep submitted nothing (or the file is unreadable)."""
    return read_json_object(SweepPaths(Path(sweep_dir)).jobs) or {}


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


def cell_state(summary: Optional[Summary], slurm_state: Optional[str]) -> tuple[CellState, str]:
    """(state, detail) of one cell from its run record and the state SLURM reports for its job."""
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
        err = summary.error or {}
        return CellState.failed, str(err.get("cause", ""))[:120]
    if status == RunStatus.preempted:
        return CellState.preempted, f"job {slurm_state.lower() if slurm_state else 'gone'}; re-run the sweep to resume"
    if slurm_state:  # job ended without a completed record: killed, out of memory, time limit, ...
        return CellState.failed, f"job {slurm_state.lower()}"
    if status == RunStatus.running:  # a local run, or a job SLURM no longer reports
        return CellState.running, ""
    return CellState.missing, ""


def sweep_status(sweep_dir: str | Path) -> list[CellStatus]:
    """Every planned cell of the sweep in ``sweep_dir``, in plan order."""
    paths = SweepPaths(Path(sweep_dir))
    plan = read_json(paths.plan)
    jobs = read_jobs(paths.root)
    latest = {name: ids[-1] for name, ids in jobs.items() if ids}
    states = slurm_states(list(latest.values()))
    out = []
    for run in plan["runs"]:
        name = run["name"]
        summary = RunRecord.peek_summary(paths.run(name))
        job_id = latest.get(name)
        slurm_state = states.get(job_id) if job_id else None
        state, detail = cell_state(summary, slurm_state)
        if job_id is None and summary is None:
            state = CellState.missing if jobs else CellState.pending
        ended = state in (CellState.completed, CellState.failed, CellState.missing) or (
            state == CellState.preempted and slurm_state not in ACTIVE)
        out.append(CellStatus(name, run.get("swept", {}), state, summary.steps_completed if summary else 0,
                              int(run.get("steps", 0)), job_id, detail, ended))
    return out


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
