"""Load a sweep's run records into a DataFrame (the *records frame*).

The records frame is the one schema every analysis (tables, plots, report) reads, so any
source of runs can feed them: the on-disk run records here (:class:`DirSource`), or the runs
fetched from the W&B API (``analysis.wandb_source.WandbSource``), both implementing the same
three methods (:class:`RunSource`). ``analysis.sources.open_source(arg)`` picks one from a
command-line argument.

Records frame (one row per run):
    ``run_dir, run_id, cell_id, config_hash, seed, status, label`` (``status``: the value of
    a ``trainer.run_record.RunStatus``, as a string; ``missing`` for an unreadable record), one
    column per swept key (NaN where a run lacks it), one column per numeric summary key.
    ``attrs["swept_keys"]``: swept keys without ``seed``, in sweep order;
    ``attrs["metric_keys"]``: the numeric summary keys;
    ``attrs["value_order"]``: {swept key: its values in the plan's run order} (may be empty);
    ``attrs["plan_first"]``: the first planned run's swept values (the default baseline cell).
History frame (one per run, ``source.history(run)``): ``step`` plus one column per logged
metric key, in logging order (a resumed run may repeat steps; readers keep the last).

The trainer writes ``meta.json`` / ``summary.json`` / ``metrics.jsonl`` per run
(``trainer.run_record``, docs/run-record.md). Runs get killed, preempted or are still going,
so every reader here is tolerant: a corrupt or absent file turns the run into
status ``missing`` (with a warning for corrupt files) instead of crashing the
whole table, because one bad run must never hide the other hundred.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pandas as pd

from trainer.record_check import read_checked, warn
from trainer.run_record import CONFIG_FILE, META_FILE, PROCESS_FIELDS, RunRecord, RunStatus, SweepPaths

BASE_COLUMNS = ["run_dir", "run_id", "cell_id", "config_hash", "seed", "status", "label"]


def _read_json(path: Path, then: str = "run counted as missing"):
    """Parsed JSON object; None if absent; None plus a ``RecordWarning`` naming the file and what is
    wrong with it (``trainer.record_check``: not UTF-8, not JSON, not an object, empty)."""
    data, problem = read_checked(path)
    if problem:
        warn(path, problem, then)
    return data


def _is_number(v) -> bool:
    # bool is an int subclass but a flag, not a metric.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_records(sweep_dir) -> pd.DataFrame:
    """One row per run of the sweep's plan (``sweep.json``), or, for a dir without a plan, per
    dir below ``sweep_dir`` holding ``meta.json``.

    A planned run with no record yet is a row of status ``missing``; a record found under the sweep
    dir that the plan does not name is left out, with a warning naming it (never pooled). The
    swept values come from the plan (an ``--append`` may have added keys), else from ``meta.json``.
    Columns: the base identity columns, one column per swept key (NaN where a run
    lacks it) and every numeric summary key. ``df.attrs["swept_keys"]`` is the
    first-seen union of swept keys without ``seed`` (seeds are replicates, not
    cells); ``df.attrs["metric_keys"]`` lists the numeric summary keys.
    """
    root = Path(sweep_dir)
    plan = load_plan(root)
    planned = {r["name"]: r for r in plan.get("runs") or [] if isinstance(r, dict) and isinstance(r.get("name"), str)}
    found = sorted(root.rglob(META_FILE))
    if planned:
        paths = SweepPaths(root)
        unplanned = [p.parent for p in found if p.parent.parent != paths.runs or p.parent.name not in planned]
        if unplanned:
            shown = ", ".join(str(d.relative_to(root)) for d in unplanned[:5])
            warn(root, f"{len(unplanned)} run records are not in its plan (sweep.json)",
                 f"left out of the table: {shown}{' ...' if len(unplanned) > 5 else ''}")
        found = [paths.run(name) / META_FILE for name in planned]
    runs = []
    for meta_path in found:
        run_dir = meta_path.parent
        entry = planned.get(run_dir.name, {})
        row = {"run_dir": str(run_dir), "run_id": run_dir.name, "status": RunStatus.missing.value}
        meta = _read_json(meta_path)
        plan_swept = entry.get("swept") if isinstance(entry.get("swept"), dict) else {}
        if meta is None:
            if entry:
                row["config_hash"], _, seed = run_dir.name.rpartition("_s")
                row["seed"] = int(seed) if seed.isdigit() else None
            runs.append((row, plan_swept, None))
            continue
        for key in ("run_id", "cell_id", "config_hash", "seed", "label"):
            if key in meta:
                row[key] = meta[key]
        if "label" not in meta and "variant" in meta:  # a record of identity version 1: its typed label
            row["label"] = meta["variant"]
        swept = meta.get("swept") or {}
        swept = {**(swept if isinstance(swept, dict) else {}), **plan_swept}
        summary = _read_json(RunRecord(run_dir, writable=False).summary_path)
        if summary is not None:
            row["status"] = str(summary.get("status", RunStatus.missing.value))
        runs.append((row, swept, summary))
    return records_frame(runs, plan)


def records_frame(runs, plan: dict) -> pd.DataFrame:
    """The records frame from ``(identity row, swept {key: value}, summary or None)`` per run, in
    order: swept keys (without ``seed``) and numeric summary keys become columns, in first-seen
    order (the plan's swept keys first), and the plan gives the attrs."""
    rows, swept_keys, metric_keys = [], [], []
    for row, swept, summary in runs:
        for key, value in swept.items():
            if key == "seed":
                continue
            if key not in swept_keys:
                swept_keys.append(key)
            row[key] = value
        for key, value in (summary or {}).items():
            if _is_number(value) and key not in BASE_COLUMNS and key not in PROCESS_FIELDS:
                if key not in metric_keys:
                    metric_keys.append(key)
                row[key] = value
        rows.append(row)
    # dict.fromkeys: a swept key may repeat a base column.
    columns = list(dict.fromkeys(BASE_COLUMNS + swept_keys + metric_keys))
    df = pd.DataFrame(rows, columns=columns)
    plan_keys = [k for k in plan.get("swept_keys", []) if k in swept_keys]
    df.attrs["swept_keys"] = plan_keys + [k for k in swept_keys if k not in plan_keys]
    df.attrs["metric_keys"] = metric_keys
    df.attrs.update(plan_attrs(plan))
    return df


def load_plan(sweep_dir) -> dict:
    """``sweep.json`` of a sweep (the plan), or {} when absent or unreadable."""
    return _read_json(SweepPaths(Path(sweep_dir)).plan, "read without the plan (its order and baseline)") or {}


def plan_attrs(plan: dict) -> dict:
    """``value_order`` and ``plan_first`` (see the module docstring) from a sweep plan."""
    order: dict[str, list] = {}
    runs = [r.get("swept") or {} for r in plan.get("runs") or [] if isinstance(r, dict)]
    for swept in runs:
        for key, value in swept.items():
            if key != "seed" and value not in order.setdefault(key, []):
                order[key].append(value)
    first = {k: v for k, v in (runs[0].items() if runs else ()) if k != "seed"}
    return {"value_order": order, "plan_first": first}


class RunSource(Protocol):
    """Where runs come from: run records on disk (:class:`DirSource`) or the W&B API
    (``analysis.wandb_source.WandbSource``). ``plan`` is the sweep's plan (``sweep.json``), {} when
    unknown; the report shows it."""

    name: str
    plan: dict

    def runs(self) -> pd.DataFrame:
        """The records frame (module docstring)."""

    def history(self, run_dir: str) -> pd.DataFrame:
        """The history frame of one run, given its records-frame ``run_dir``."""

    def config(self, run_dir: str) -> dict:
        """The run's resolved config as a nested dict ({} when unknown)."""


class DirSource:
    """Run records on disk below ``sweep_dir`` (docs/run-record.md)."""

    def __init__(self, sweep_dir):
        self.root = Path(sweep_dir)
        self.name = self.root.name

    def __repr__(self) -> str:
        return f"DirSource({str(self.root)!r})"

    @property
    def plan(self) -> dict:
        return load_plan(self.root)

    def runs(self) -> pd.DataFrame:
        return load_records(self.root)

    def history(self, run_dir: str) -> pd.DataFrame:
        return load_metrics(run_dir)

    def evals(self, run_dir: str) -> list:
        """The run's per-prompt eval outcomes (``evals.jsonl``: ``trainer.run_record.EvalRow``s, by
        step; [] for a run that logged none). Optional for a source: pairing by prompt needs it."""
        return RunRecord(run_dir, writable=False).evals()

    def config(self, run_dir: str) -> dict:
        import yaml

        path = Path(run_dir) / CONFIG_FILE
        try:
            data = yaml.safe_load(path.read_text()) if path.exists() else None
        except (OSError, yaml.YAMLError):
            data = None
        return data if isinstance(data, dict) else {}


def load_metrics(run_dir) -> pd.DataFrame:
    """Per-step metrics from ``metrics.jsonl``.

    Unparseable lines are skipped: a job killed mid-write leaves a truncated last
    line, and the steps before it are still valid. A missing file gives an empty
    frame so callers can treat "no metrics yet" uniformly.
    """
    # trainer.run_record's reader: the same tolerance. File order is kept (not sorted by step): a
    # resumed run may repeat steps.
    return pd.DataFrame.from_records(RunRecord(run_dir, writable=False).metrics())
