"""Submit a sweep's cells to SLURM as one job array (submitit).

``submit_slurm`` returns as soon as ``sbatch`` accepted the array; nothing here waits on a job.
What it submitted goes to ``<sweep_dir>/jobs.json`` ({run name: [job ids, newest last]}), which
``sweeps.status`` joins with the run records and SLURM's view, so a re-run of the sweep command
skips completed and queued cells and resubmits failed, preempted and missing ones.

Nothing from a config reaches a shell unquoted: sbatch option names are checked against a pattern,
environment names must be shell names, values (and environment values) are shell-quoted and may
not hold control characters (``trainer.safe_text``; validation refuses them in every config string
first, this is the check at the point of writing), and the job name is the sanitized sweep id.
The pickles, the sbatch script and everything the job writes are created 0600 (``sweeps.job_env``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from sweeps.job import CellJob
from sweeps.job_env import private_files
from sweeps.plan import PlanStatus, SweepPlan
from sweeps.status import ACTIVE, read_jobs, slurm_states, write_jobs
from trainer.config import LauncherConfig
from trainer.knobs import ConfigError
from trainer.provenance import REPO_ROOT, code_version
from trainer.run_record import SUMMARY_FILE, SweepPaths
from trainer.safe_text import CONTROL_CHARS, env_name_error, key_text, shown
from trainer.secrets import redact_text

CODE_PACKAGES = ("trainer", "sweeps", "analysis")
_OPTION = re.compile(r"^[a-z][a-z0-9-]*$")
# Options the launcher sets itself: overriding them through sbatch_extra would break the job array.
_RESERVED = {"array", "output", "error", "open-mode", "signal", "job-name", "wrap", "chdir", "export"}


# ---------------------------------------------------------------- validation (before any submit)
def check_launcher(cfg: LauncherConfig) -> None:
    """Raise ``ConfigError`` naming the key for anything that could not be passed to sbatch safely."""
    errors = []
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(cfg, key)
        if value is not None and (CONTROL_CHARS.search(str(value)) or not str(value).strip()):
            errors.append(f"launcher.{key}={shown(redact_text(str(value)))}: must be a non-empty single-line string")
    for opt, value in cfg.sbatch_extra.items():
        if not _OPTION.match(str(opt)):
            errors.append(f"launcher.sbatch_extra.{key_text(opt)}: not an sbatch option name (lowercase letters, "
                          "digits, '-')")
        elif opt in _RESERVED:
            errors.append(f"launcher.sbatch_extra.{opt}: set by the launcher itself; reserved: "
                          f"{', '.join(sorted(_RESERVED))}")
        if CONTROL_CHARS.search(str(value)):
            errors.append(f"launcher.sbatch_extra.{key_text(opt)}={shown(redact_text(str(value)))}: control "
                          "characters are not allowed")
    for name, value in cfg.env.items():
        if env_name_error("launcher.env", name):
            errors.append(env_name_error("launcher.env", name))
        elif CONTROL_CHARS.search(str(value)):  # the value is never shown: it may be a secret
            errors.append(f"launcher.env.{name}: control characters are not allowed in its value")
    if errors:
        raise ConfigError("\n".join(errors))


def job_name(sweep_id: str) -> str:
    return "grpolab-" + (re.sub(r"[^A-Za-z0-9_.-]", "_", sweep_id)[:64] or "sweep")


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
    # sweeps.job_boot holds the stop signals until the job's StopFlag is installed (a USR2 can come at once).
    python = shlex.quote(sys.executable) + (" -P" if code_dir is not None and sys.version_info >= (3, 11) else "")
    python += " -u -m sweeps.job_boot"
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
    paths = SweepPaths(plan.sweep_dir)
    launchers = {id(r.cfg.launcher): r.cfg.launcher for r in plan.runs}
    for launcher in launchers.values():
        check_launcher(launcher)
    launcher = plan.runs[0].cfg.launcher
    jobs = read_jobs(paths.root)
    states = slurm_states([ids[-1] for ids in jobs.values() if ids])
    completed, active, todo, resubmitted, missing = [], [], [], [], []
    for run in plan.runs:
        if run.status == PlanStatus.skip:
            completed.append(run.name)
            continue
        ids = jobs.get(run.name, [])
        if run.status == PlanStatus.live or (ids and states.get(ids[-1]) in ACTIVE):
            active.append(run.name)
            continue
        todo.append(run)
        had_record = (paths.run(run.name) / SUMMARY_FILE).exists()
        (resubmitted if had_record else missing).append(run.name)
    report = SubmitReport({}, completed, active, resubmitted, missing)
    if not todo:
        return report
    version = check_code_version(launcher)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    code_dir = snapshot_code(paths.root.resolve(), stamp) if launcher.snapshot_code else None
    if code_dir is not None and sys.version_info < (3, 11):
        print("warning: launcher.snapshot_code needs Python 3.11 (python -P) to take precedence over the "
              "submit directory; jobs may import the live tree", file=sys.stderr)
    with private_files():  # the pickles, the sbatch script (its exports hold launcher.env) and the job's files
        executor = make_executor(launcher, plan.sweep_id, paths.logs / "%j", code_dir)
        try:
            with executor.batch():
                handles = [
                    executor.submit(CellJob(run.cfg, str(paths.run(run.name).resolve()),
                                            dataclasses.replace(plan.meta_for(run), code_version=version)))
                    for run in todo
                ]
        except Exception as e:  # sbatch's refusal (bad partition, account, ...) is the user's to read
            raise ConfigError(f"sbatch refused the job array (check the launcher.* options); nothing was "
                              f"submitted:\n{e}") from None
    for run, job in zip(todo, handles):
        jobs.setdefault(run.name, []).append(job.job_id)
        report.submitted[run.name] = job.job_id
    write_jobs(paths.root, jobs)
    return report
