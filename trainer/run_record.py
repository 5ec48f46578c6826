"""The run record: the single contract between a run and everything downstream.

``<run_dir>/config.yaml`` (resolved config), ``meta.json`` (ids, hash, seed, code version,
swept values), ``metrics.jsonl`` (one line per step, appended and flushed), ``summary.json``
(status and headline numbers). Whole files are written atomically (temp file + ``os.replace``)
so a run killed mid-write leaves the previous version readable; a torn last metrics line is
the only possible damage, and readers skip it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
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
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_jsonl(path: Path) -> list[dict]:
    """Parse a JSONL file, skipping a torn or corrupt line (a killed writer's last line)."""
    rows = []
    if not Path(path).exists():
        return rows
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
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
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.dir / "summary.json"

    def write_config(self, yaml_text: str) -> None:
        if not self.writable:
            return
        atomic_write_text(self.dir / "config.yaml", yaml_text)

    def write_meta(self, meta: dict) -> None:
        if not self.writable:
            return
        atomic_write_json(self.dir / "meta.json", meta)

    def append_metrics(self, row: dict) -> None:
        if not self.writable:
            return
        line = json.dumps(_jsonable(row), sort_keys=True)
        with open(self.metrics_path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_summary(self, summary: dict) -> None:
        if not self.writable:
            return
        atomic_write_json(self.summary_path, summary)

    def read_summary(self) -> dict | None:
        try:
            return read_json(self.summary_path)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @staticmethod
    def peek_summary(run_dir: str | Path) -> dict | None:
        """The summary of a run dir that may not exist, without creating it."""
        try:
            return read_json(Path(run_dir) / "summary.json")
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)
