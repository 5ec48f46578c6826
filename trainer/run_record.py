"""The run record: the one contract between a run and everything downstream.

A run directory holds ``config.yaml`` (the resolved config), ``meta.json`` (:class:`Meta`: who
the run is), ``metrics.jsonl`` (one line per step) and ``summary.json`` (:class:`Summary`: where
it stands). A sweep directory holds ``sweep.json`` (the plan), ``jobs.json`` (SLURM job ids),
``logs.json`` (local cells: their log files), ``runs/<name>/`` and ``logs/``. This module is the
only place those names and the statuses are spelled (each metric's better direction:
``trainer.metric_directions``, re-exported here); the trainer, the launchers, tune, tracking and
analysis import them from here. It imports nothing heavy (no torch), so readers of records stay fast.

Whole files are written atomically (temp file + ``os.replace``), so a run killed mid-write leaves
the previous version readable; a torn last metrics line is the only possible damage, and readers
skip it. Every file written here is created mode 0600 (``tempfile.mkstemp``'s mode, kept by
``os.replace``): a record is its owner's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from trainer.eval_record import EvalRow, prompt_id  # noqa: F401 (re-exported)
from trainer.metric_directions import METRIC_DIRECTIONS, Direction, direction, is_declared  # noqa: F401 (re-exported)
from trainer.record_check import field_problems, read_checked, warn


class RunStatus(str, Enum):
    """What ``summary.json`` says of a run (``missing``: readers only, no readable record)."""

    running = "running"
    completed = "completed"
    failed = "failed"
    preempted = "preempted"  # stopped by a signal at a step boundary, checkpointed: resumes
    pruned = "pruned"  # stopped by grpolab tune's pruner
    missing = "missing"

    def __str__(self) -> str:
        return self.value


# ---------------------------------------------------------------- paths
CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
METRICS_FILE = "metrics.jsonl"
EVALS_FILE = "evals.jsonl"  # per-prompt eval outcomes, one row per eval step (EvalRow)
METRICS_CORRUPT_FILE = "metrics.corrupt.jsonl"  # lines of metrics.jsonl that were not JSON, kept aside on resume
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoint"
SWEEP_PLAN_FILE = "sweep.json"
SWEEP_JOBS_FILE = "jobs.json"
SWEEP_LOGS_FILE = "logs.json"  # local sweeps and tune studies: run name -> its log files, newest attempt last
SWEEP_TABLE_FILE = "table.md"
RUN_LOCK_FILE = ".lock"  # held by the one process writing a run dir (trainer.locks)
SWEEP_LOCK_FILE = ".sweep.lock"  # held while an invocation reads and writes sweep.json / jobs.json / logs.json
RUNS_DIR = "runs"
LOGS_DIR = "logs"
SWEEPS_DIR = "sweeps"  # <paths.output_root>/sweeps/<sweep id>
TUNE_DIR = "tune"  # <paths.output_root>/tune/<study name>


def sweep_root(output_root: str | Path, sweep_id: str) -> Path:
    """The directory of sweep ``sweep_id`` under ``paths.output_root``."""
    return Path(output_root) / SWEEPS_DIR / sweep_id


def tune_root(output_root: str | Path, study_name: str) -> Path:
    """The directory of ``grpolab tune`` study ``study_name`` under ``paths.output_root``."""
    return Path(output_root) / TUNE_DIR / study_name


def rank_error_file(rank: int) -> str:
    """Where a rank other than 0 of a multi-process run leaves its failure."""
    return f"error.rank{rank}.json"


@dataclass(frozen=True)
class SweepPaths:
    """The files of a sweep directory (``<paths.output_root>/sweeps/<id>``, or a tune's root)."""

    root: Path

    @property
    def plan(self) -> Path:
        return self.root / SWEEP_PLAN_FILE

    @property
    def jobs(self) -> Path:
        return self.root / SWEEP_JOBS_FILE

    @property
    def log_map(self) -> Path:
        return self.root / SWEEP_LOGS_FILE

    @property
    def table(self) -> Path:
        return self.root / SWEEP_TABLE_FILE

    @property
    def runs(self) -> Path:
        return self.root / RUNS_DIR

    @property
    def logs(self) -> Path:
        return self.root / LOGS_DIR

    def run(self, name: str) -> Path:
        return self.runs / name


# The version of the identity classification new runs are hashed under (trainer.identity); a
# ``meta.json`` without one was written under version 1.
IDENTITY_VERSION = 2


# ---------------------------------------------------------------- meta and summary
def _from_json(cls, data: Any):
    """An instance of dataclass ``cls`` from a JSON object: known keys only, the rest ignored; None
    when a known key has a value of the wrong type (``trainer.record_check``)."""
    if not isinstance(data, dict) or field_problems(cls, data):
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Meta:
    """``meta.json``: who a run is. Written once, at a fresh start; a resumed run keeps it."""

    run_id: str
    config_hash: str  # identity of the cell: runs of one cell with other seeds share it
    seed: int
    label: str = ""  # what is on: the loss, a non-default batching mode, the features (grpo+ar+lopti)
    hash_version: int = 1  # the identity classification the hash was taken under (trainer.identity)
    sweep_id: Optional[str] = None
    cell_id: Optional[str] = None  # = config_hash
    swept: dict = field(default_factory=dict)  # swept key -> value (sweeps and tune trials)
    overrides: list = field(default_factory=list)
    plan_index: Optional[int] = None  # position in the sweep's plan (sweeps only)
    tune: Optional[dict] = None  # {trial, seed_index} of a grpolab tune run
    code_version: dict = field(default_factory=dict)  # {commit, dirty}
    created: str = ""
    world_size: int = 1
    slurm_job_id: Optional[str] = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Optional["Meta"]:
        if not isinstance(data, dict) or not {"run_id", "config_hash", "seed"} <= set(data):
            return None
        return _from_json(cls, data)


# Summary fields that say where a run's process is, not what the run measured: never a metric.
PROCESS_FIELDS = ("host", "pid", "heartbeat", "phase", "nodes")


@dataclass
class Summary:
    """``summary.json``: where a run stands; rewritten after every step and at the end."""

    status: RunStatus = RunStatus.running
    steps_completed: int = 0
    attempt: int = 1
    error: Optional[dict] = None  # {step, cause[, traceback]} of a run that did not complete
    resumed_from_step: Optional[int] = None
    wall_time_s: Optional[float] = None
    warmstart_eval_accuracy: Optional[float] = None
    final_eval_accuracy: Optional[float] = None
    best_eval_accuracy: Optional[float] = None
    final_reward: Optional[float] = None
    final_response_length: Optional[float] = None
    timing: Optional[dict] = None  # job overheads, seconds (docs/run-record.md)
    warnings: Optional[list] = None  # what makes this run's numbers suspect (e.g. a warm start at 0 or 1)
    host: Optional[str] = None  # where the run's process is (or was) ...
    pid: Optional[int] = None  # ... and its id: a `running` record whose process is gone is dead
    heartbeat: Optional[float] = None  # Unix time of the last write while running (at least every step)
    phase: Optional[str] = None  # what the run is doing or last did, in words (the progress lines show it)
    nodes: Optional[list] = None  # several ranks: each one's node (SLURMD_NODENAME, else its hostname), rank order

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)

    def to_json(self) -> dict:
        """Every field that is set (``error`` always: null when none)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k == "error"}
        out["status"] = self.status.value
        return out

    @classmethod
    def from_json(cls, data: Any) -> Optional["Summary"]:
        try:
            return _from_json(cls, data)
        except (TypeError, ValueError):  # a status no version of grpolab writes
            return None

    def headline(self) -> dict[str, float]:
        """The numeric fields: what tables, tune objectives and W&B summaries read."""
        return {k: v for k, v in self.to_json().items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ---------------------------------------------------------------- reading and writing
def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    """Non-finite floats become null: JSON has no NaN, and readers must not choke."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_json_object(path: Path, cls=None) -> Optional[dict]:
    """A JSON object from ``path`` (of dataclass ``cls``'s field types, if given); None when it is
    absent, or damaged, with a ``RecordWarning`` saying how."""
    data, problem = read_checked(path, cls)
    if problem:
        warn(path, problem)
    return data


def read_jsonl(path: Path, corrupt: Optional[list] = None) -> list[dict]:
    """The JSON objects of a JSONL file. A torn last line (a killed writer's) is skipped; any other
    line that is not a JSON object in UTF-8 is skipped too, and appended to ``corrupt`` as
    ``(line number, text)`` when given, else warned of (``RecordWarning``): never dropped silently."""
    try:
        lines = Path(path).read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    lines = lines[:-1] if lines and not lines[-1] else lines
    rows, bad = [], []
    for n, raw in enumerate(lines, 1):
        try:
            row = json.loads(raw.decode("utf-8"))
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif n < len(lines) or row is not None:
            bad.append((n, raw.decode("utf-8", errors="replace")))
    if corrupt is not None:
        corrupt.extend(bad)
    elif bad:
        warn(path, f"line {', '.join(str(n) for n, _ in bad)} not a JSON object", "skipped")
    return rows


class RunRecord:
    """The files of one run. ``writable=False`` (ranks other than 0 of a multi-process run) reads
    them but turns every write into a no-op: one writer per record."""

    def __init__(self, run_dir: str | Path, writable: bool = True):
        self.dir = Path(run_dir)
        self.writable = writable
        if writable:
            self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def meta_path(self) -> Path:
        return self.dir / META_FILE

    @property
    def metrics_path(self) -> Path:
        return self.dir / METRICS_FILE

    @property
    def evals_path(self) -> Path:
        return self.dir / EVALS_FILE

    @property
    def summary_path(self) -> Path:
        return self.dir / SUMMARY_FILE

    def write_config(self, yaml_text: str) -> None:
        if self.writable:
            atomic_write_text(self.config_path, yaml_text)

    def write_meta(self, meta: Meta) -> None:
        if self.writable:
            atomic_write_json(self.meta_path, meta.to_json())

    def append_metrics(self, row: dict) -> None:
        self._append(self.metrics_path, row)

    def append_evals(self, row: EvalRow) -> None:
        self._append(self.evals_path, row.to_json())

    def _append(self, path: Path, row: dict) -> None:
        if not self.writable:
            return
        line = json.dumps(_jsonable(row), sort_keys=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rewrite_metrics(self, rows: list[dict]) -> None:
        if self.writable:
            atomic_write_text(self.metrics_path, "".join(json.dumps(_jsonable(r), sort_keys=True) + "\n" for r in rows))

    def rewrite_evals(self, rows: list[EvalRow]) -> None:
        if self.writable:
            atomic_write_text(self.evals_path, "".join(json.dumps(_jsonable(r.to_json()), sort_keys=True) + "\n"
                                                       for r in rows))

    def write_summary(self, summary: Summary) -> None:
        if self.writable:
            atomic_write_json(self.summary_path, summary.to_json())

    def keep_aside(self, corrupt: list[tuple[int, str]]) -> None:
        """Append corrupt lines of ``metrics.jsonl`` (``(line number, text)``) to ``metrics.corrupt.jsonl``."""
        if self.writable and corrupt:
            with open(self.dir / METRICS_CORRUPT_FILE, "a") as f:
                f.write("".join(json.dumps({"line": n, "text": text}) + "\n" for n, text in corrupt))

    def read_meta(self) -> Optional[Meta]:
        return Meta.from_json(read_json_object(self.meta_path, Meta))

    def read_summary(self) -> Optional[Summary]:
        return RunRecord.peek_summary(self.dir)

    @staticmethod
    def peek_summary(run_dir: str | Path) -> Optional[Summary]:
        """The summary of a run dir that may not exist, without creating it (None, with a
        ``RecordWarning``, when ``summary.json`` is not one)."""
        path = Path(run_dir) / SUMMARY_FILE
        data = read_json_object(path, Summary)
        summary = Summary.from_json(data)
        if data is not None and summary is None:
            warn(path, f"status {data.get('status')!r} is not a run status")
        return summary

    @staticmethod
    def peek_status(run_dir: str | Path) -> Optional[RunStatus]:
        summary = RunRecord.peek_summary(run_dir)
        return summary.status if summary is not None else None

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def evals(self) -> list[EvalRow]:
        """The rows of ``evals.jsonl`` that are eval rows (others skipped, with a ``RecordWarning``);
        a step logged twice (a record from before resume truncated this file) counts once, the last."""
        rows = {}
        for data in read_jsonl(self.evals_path):
            row = EvalRow.from_json(data)
            if row is None:
                warn(self.evals_path, f"a row is not an eval row (step {data.get('step')!r})", "skipped")
            else:
                rows[row.step] = row
        return [rows[s] for s in sorted(rows)]
