"""Submit a sweep's cells to SLURM as one job array (submitit), and read back where they stand.

``submit_slurm`` returns as soon as ``sbatch`` accepted the array; nothing here waits on a job.
What a sweep has submitted is kept in ``<sweep_dir>/jobs.json`` ({run name: [job ids, newest last]}),
so ``sweep_status`` can join the run records (the truth about training) with SLURM's view
(``squeue`` for live jobs, ``sacct`` for finished ones) and a re-run of the sweep command can tell
completed, queued, failed and missing cells apart.

Nothing from a config reaches a shell unquoted: sbatch option names are checked against a pattern,
values (and environment values) are shell-quoted and may not hold control characters, and the job
name is the sanitized sweep id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sweeps.job import CellJob
from sweeps.plan import SweepPlan
from trainer.config import ConfigError, LauncherConfig
from trainer.provenance import REPO_ROOT, code_version
from trainer.run_record import RunRecord, Summary, atomic_write_json, read_json

CODE_PACKAGES = ("trainer", "sweeps", "analysis")
_OPTION = re.compile(r"^[a-z][a-z0-9-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Options the launcher sets itself: overriding them through sbatch_extra would break the job array.
_RESERVED = {"array", "output", "error", "open-mode", "signal", "job-name", "wrap", "chdir", "export"}

ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
          "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}


# ---------------------------------------------------------------- validation (before any submit)
def check_launcher(cfg: LauncherConfig) -> None:
    """Raise ``ConfigError`` naming the key for anything that could not be passed to sbatch safely."""
    errors = []
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(cfg, key)
        if value is not None and (_CONTROL.search(str(value)) or not str(value).strip()):
            errors.append(f"launcher.{key}={value!r}: must be a non-empty single-line string")
    for opt, value in cfg.sbatch_extra.items():
        if not _OPTION.match(str(opt)):
            errors.append(f"launcher.sbatch_extra.{opt}: not an sbatch option name (lowercase letters, digits, '-')")
        elif opt in _RESERVED:
            errors.append(f"launcher.sbatch_extra.{opt}: set by the launcher itself; reserved: {sorted(_RESERVED)}")
        if _CONTROL.search(str(value)):
            errors.append(f"launcher.sbatch_extra.{opt}={value!r}: control characters (newlines) are not allowed")
    for name, value in cfg.env.items():
        if not _ENV_NAME.match(str(name)):
            errors.append(f"launcher.env.{name}: not a valid environment variable name")
        if _CONTROL.search(str(value)):
            errors.append(f"launcher.env.{name}={value!r}: control characters (newlines) are not allowed")
    if errors:
        raise ConfigError("invalid launcher config:\n  " + "\n  ".join(errors))


def job_name(sweep_id: str) -> str:
    return "grpolab-" + (re.sub(r"[^A-Za-z0-9_.-]", "_", sweep_id)[:64] or "sweep")


# ---------------------------------------------------------------- job bookkeeping
def jobs_path(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / "jobs.json"


def read_jobs(sweep_dir: Path) -> dict[str, list[str]]:
    try:
        return read_json(jobs_path(sweep_dir))
    except (FileNotFoundError, ValueError):
        return {}


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


# ---------------------------------------------------------------- status
@dataclass
class CellStatus:
    name: str
    swept: dict
    state: str  # pending | running | completed | failed | preempted | missing
    steps_done: int
    steps_total: int
    job_id: str | None
    detail: str = ""
    ended: bool = False  # nothing will change this cell any more without a new submission


def cell_state(summary: Summary | None, slurm_state: str | None) -> tuple[str, str]:
    """(state, detail) of one cell from its run record and the state SLURM reports for its job."""
    status = summary.status if summary is not None else None
    if status == "completed":
        return "completed", ""
    if slurm_state in ("RUNNING", "COMPLETING", "CONFIGURING"):
        return ("running", "") if status != "preempted" else ("preempted", "checkpointed, stopping")
    if slurm_state in ACTIVE:
        if status == "preempted":
            return "preempted", f"requeued ({slurm_state.lower()}), resumes from its checkpoint"
        return "pending", slurm_state.lower()
    if status == "failed":
        err = summary.error or {}
        return "failed", str(err.get("cause", ""))[:120]
    if status == "preempted":
        return "preempted", f"job {slurm_state.lower() if slurm_state else 'gone'}; re-run the sweep to resume"
    if slurm_state:  # job ended without a completed record: killed, out of memory, time limit, ...
        return "failed", f"job {slurm_state.lower()}"
    if status == "running":  # a local run, or a job SLURM no longer reports
        return "running", ""
    return "missing", ""


def sweep_status(sweep_dir: Path) -> list[CellStatus]:
    sweep_dir = Path(sweep_dir)
    plan = read_json(sweep_dir / "sweep.json")
    jobs = read_jobs(sweep_dir)
    latest = {name: ids[-1] for name, ids in jobs.items() if ids}
    states = slurm_states(list(latest.values()))
    out = []
    for run in plan["runs"]:
        name = run["name"]
        summary = RunRecord.peek_summary(sweep_dir / "runs" / name)
        job_id = latest.get(name)
        slurm_state = states.get(job_id) if job_id else None
        state, detail = cell_state(summary, slurm_state)
        if job_id is None and summary is None:
            state = "missing" if jobs else "pending"
        ended = state in ("completed", "failed", "missing") or (state == "preempted" and slurm_state not in ACTIVE)
        out.append(CellStatus(name, run.get("swept", {}), state, summary.steps_completed if summary else 0,
                              int(run.get("steps", 0)), job_id, detail, ended))
    return out


def format_status(sweep_id: str, cells: list[CellStatus]) -> str:
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.state] = counts.get(c.state, 0) + 1
    done = sum(c.steps_total if c.state == "completed" else c.steps_done for c in cells)
    total = sum(c.steps_total for c in cells) or 1
    lines = [f"sweep {sweep_id}: {len(cells)} cells: "
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"; {done}/{total} steps ({100 * done / total:.0f}%)"]
    for c in cells:
        swept = " ".join(f"{k}={v}" for k, v in c.swept.items())
        lines.append(f"  {c.state:<9} {c.name}  {c.steps_done}/{c.steps_total}  job {c.job_id or '-'}  {swept}"
                     + (f"  ({c.detail})" if c.detail else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------- submit
def snapshot_code(sweep_dir: Path, stamp: str) -> Path:
    """Copy the importable packages so queued jobs run the code of this submission."""
    dest = sweep_dir / "code" / stamp
    for pkg in CODE_PACKAGES:
        src = REPO_ROOT / pkg
        if src.is_dir():
            shutil.copytree(src, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    return dest


def make_executor(launcher: LauncherConfig, sweep_id: str, folder: Path, code_dir: Path | None):
    import submitit

    check_launcher(launcher)
    from trainer.provenance import TORCH_EXTENSIONS_DIR

    setup = [
        "export GRPOLAB_JOB_T0=$(date +%s.%N)",  # job start, for the overhead figure
        # DeepSpeed's JIT-compiled ops: the submitting checkout's cache, not the code snapshot's (one build)
        f"export TORCH_EXTENSIONS_DIR=${{TORCH_EXTENSIONS_DIR:-{shlex.quote(str(TORCH_EXTENSIONS_DIR))}}}",
    ]
    if code_dir is not None:
        setup.append(f"export PYTHONPATH={shlex.quote(str(code_dir))}${{PYTHONPATH:+:$PYTHONPATH}}")
    setup += [f"export {k}={shlex.quote(str(v))}" for k, v in launcher.env.items()]
    params = {
        "job_name": job_name(sweep_id),
        "time": launcher.time_min,
        "nodes": launcher.nodes,
        "ntasks_per_node": launcher.tasks_per_node,
        "cpus_per_task": launcher.cpus_per_task,
        "signal_delay_s": launcher.signal_delay_s,
        "array_parallelism": launcher.max_parallel,
        "setup": setup,
        "additional_parameters": dict(launcher.sbatch_extra),
    }
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(launcher, key) is not None:
            params[key] = str(getattr(launcher, key))
    if launcher.gpus_per_task:
        params["gpus_per_task"] = launcher.gpus_per_task
    if launcher.mem_gb is not None:
        params["mem"] = f"{int(launcher.mem_gb * 1024)}M"
    # The job's python is this venv's. `python -m` would put the job's working directory (the submit
    # dir, often the repo itself) first on sys.path, ahead of the snapshot: -P (3.11+) stops that.
    python = shlex.quote(sys.executable) + (" -P" if code_dir is not None and sys.version_info >= (3, 11) else "")
    executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=launcher.max_requeues, python=python)
    executor.update_parameters(**params)
    return executor


@dataclass
class SubmitReport:
    submitted: dict[str, str]  # run name -> job id
    completed: list[str]
    active: list[str]
    resubmitted: list[str]  # had a record or a job before (failed, preempted, killed)
    missing: list[str]  # never submitted or record deleted

    def describe(self) -> str:
        return (f"submitted {len(self.submitted)} jobs ({len(self.missing)} new or missing, "
                f"{len(self.resubmitted)} failed/preempted resubmitted); skipped {len(self.completed)} completed "
                f"and {len(self.active)} already queued or running")


def check_code_version(launcher: LauncherConfig) -> dict:
    version = code_version()
    if version.get("dirty"):
        msg = "the git tree has uncommitted changes"
        if launcher.refuse_dirty:
            raise ConfigError(f"launcher.refuse_dirty=true: {msg}; commit them or set launcher.refuse_dirty=false")
        print(f"warning: {msg}; jobs run them as they are now (recorded as dirty in meta.json)", file=sys.stderr)
    return version


def submit_slurm(plan: SweepPlan) -> SubmitReport:
    """Submit every cell that is neither completed nor queued/running as one job array; return at once."""
    sweep_dir = plan.sweep_dir
    launchers = {id(r.cfg.launcher): r.cfg.launcher for r in plan.runs}
    for launcher in launchers.values():
        check_launcher(launcher)
    launcher = plan.runs[0].cfg.launcher
    jobs = read_jobs(sweep_dir)
    states = slurm_states([ids[-1] for ids in jobs.values() if ids])
    completed, active, todo, resubmitted, missing = [], [], [], [], []
    for run in plan.runs:
        if run.status == "skip":
            completed.append(run.name)
            continue
        ids = jobs.get(run.name, [])
        if ids and states.get(ids[-1]) in ACTIVE:
            active.append(run.name)
            continue
        todo.append(run)
        had_record = (sweep_dir / "runs" / run.name / "summary.json").exists()
        (resubmitted if had_record else missing).append(run.name)
    report = SubmitReport({}, completed, active, resubmitted, missing)
    if not todo:
        return report
    version = check_code_version(launcher)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    code_dir = snapshot_code(sweep_dir.resolve(), stamp) if launcher.snapshot_code else None
    if code_dir is not None and sys.version_info < (3, 11):
        print("warning: launcher.snapshot_code needs Python 3.11 (python -P) to take precedence over the "
              "submit directory; jobs may import the live tree", file=sys.stderr)
    executor = make_executor(launcher, plan.sweep_id, sweep_dir / "logs" / "%j", code_dir)
    try:
        with executor.batch():
            handles = [
                executor.submit(CellJob(run.cfg, str((sweep_dir / "runs" / run.name).resolve()),
                                        dataclasses.replace(plan.meta_for(run), code_version=version)))
                for run in todo
            ]
    except Exception as e:  # noqa: BLE001 - sbatch's refusal (bad partition, account, ...) is the user's to read
        raise ConfigError(f"sbatch refused the job array (check the launcher.* options); nothing was submitted:\n{e}") from None
    for run, job in zip(todo, handles):
        jobs.setdefault(run.name, []).append(job.job_id)
        report.submitted[run.name] = job.job_id
    atomic_write_json(jobs_path(sweep_dir), jobs)
    return report
