"""Where each local cell's log is: ``logs/<run name>/`` and ``logs.json``, the map a reader starts from.

A submitit ``LocalExecutor`` writes a job's stdout and stderr under its folder, named by the job's
id (the process id). One executor per run, with the folder ``logs/<run name>/``, puts every
attempt of a run beside the others, and ``logs.json`` ({run name: [{job, stdout, stderr}, ...],
newest attempt last; paths relative to the sweep dir}) says which files belong to which attempt,
as ``jobs.json`` does for SLURM sweeps. It is read and rewritten under the sweep's plan lock
(``trainer.locks.sweep_lock``) and replaced atomically, so two invocations or a killed one cannot
tear it; an unreadable one is read as empty, with a warning, and rewritten.
"""

from __future__ import annotations

from pathlib import Path

from trainer.locks import sweep_lock
from trainer.record_check import warn
from trainer.run_record import SweepPaths, atomic_write_json, read_json_object

_KEYS = ("job", "stdout", "stderr")


def read_log_map(sweep_dir: str | Path) -> dict[str, list[dict]]:
    """``logs.json`` as {run name: [attempt, ...]}; entries that are not what it holds are dropped, with
    a warning."""
    path = SweepPaths(Path(sweep_dir)).log_map
    data = read_json_object(path) or {}
    good = {name: attempts for name, attempts in data.items()
            if isinstance(attempts, list) and all(isinstance(a, dict) and set(_KEYS) <= set(a) for a in attempts)}
    if len(good) < len(data):
        warn(path, f"the log entries of {sorted(set(data) - set(good))} are not lists of {{job, stdout, stderr}}",
             "those runs have no log entry")
    return good


def latest_log(sweep_dir: str | Path, name: str) -> Path | None:
    """The newest attempt's stderr of run ``name`` when anything was written there, else its stdout."""
    attempts = read_log_map(sweep_dir).get(name)
    if not attempts:
        return None
    root = Path(sweep_dir)
    err, out = root / attempts[-1]["stderr"], root / attempts[-1]["stdout"]
    return err if err.is_file() and err.stat().st_size else out


class RunLogExecutor:
    """``submit(job)`` of a cell (anything with a ``run_dir``) through a ``LocalExecutor`` logging to
    ``logs/<run name>/``, recorded in ``logs.json``."""

    def __init__(self, sweep_dir: str | Path, timeout_min: int = 24 * 60):
        self.paths = SweepPaths(Path(sweep_dir))
        self.timeout_min = timeout_min

    def submit(self, job):
        """The ``submitit.Job`` running ``job`` (submitit is imported here: ``grpolab status`` reads
        ``logs.json`` through this module and stays light)."""
        import submitit

        name = Path(job.run_dir).name
        executor = submitit.LocalExecutor(folder=str(self.paths.logs / name))
        executor.update_parameters(timeout_min=self.timeout_min)
        submitted = executor.submit(job)
        self.record(name, submitted)
        return submitted

    def record(self, name: str, job) -> None:
        """Append this attempt's log files to ``logs.json`` (under the plan lock, atomically)."""
        def rel(p) -> str:
            p = Path(p).absolute()
            try:
                return str(p.relative_to(self.paths.root.absolute()))
            except ValueError:
                return str(p)

        with sweep_lock(self.paths.root):
            logs = read_log_map(self.paths.root)
            entry = {"job": str(job.job_id), "stdout": rel(job.paths.stdout), "stderr": rel(job.paths.stderr)}
            logs[name] = [*logs.get(name, []), entry]
            atomic_write_json(self.paths.log_map, logs)
