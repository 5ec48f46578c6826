"""What the runs' resolved configs (``source.config(run_dir)``) tell the plots and the report: how
each cell's config differs from the baseline cell's, and whether the eval schedule left the eval
curves with only their end points.

The trainer evaluates the warm start (step 0), every ``train.eval_every`` steps and at the last
step (``trainer/run.py``), so ``eval_every >= steps`` leaves two points per eval curve: a line
from start to end that looks like a learning curve but is not one.
"""
from __future__ import annotations

import json

import pandas as pd

from trainer.run_record import RunStatus

# Keys that differ between runs of one cell by design (identity, seeds, where things are written).
PER_RUN = ("seed", "run", "paths", "output", "hydra", "tracker", "wandb", "sweep")


class CachedConfigs:
    """``source.config`` read once per run: the report asks for each run's config twice."""

    def __init__(self, source):
        self.source, self._seen = source, {}

    def config(self, run_dir) -> dict:
        if run_dir not in self._seen:
            self._seen[run_dir] = self.source.config(run_dir)
        return self._seen[run_dir]


def flatten(config: dict, prefix: str = "") -> dict:
    """{dotted key: leaf value} of a nested config (lists kept as one value)."""
    out = {}
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _per_run(key: str) -> bool:
    head = key.split(".")[0]
    return head in PER_RUN or key.endswith(("seed", "_dir", "_path"))


def _shown(value) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)


def cell_config(source, run_dirs) -> dict:
    """The flattened config the runs of one cell share: keys whose value is the same in every run
    read (per-run keys such as seeds and paths left out)."""
    shared: dict | None = None
    for run_dir in run_dirs:
        flat = {k: _shown(v) for k, v in flatten(source.config(run_dir)).items() if not _per_run(k)}
        if not flat:
            continue
        shared = flat if shared is None else {k: v for k, v in shared.items() if flat.get(k, object()) == v}
    return shared or {}


def config_differences(cell: dict, baseline: dict) -> dict:
    """{key: (baseline value, cell value)} of the keys whose values differ ("—" where absent)."""
    keys = sorted(set(cell) | set(baseline))
    return {k: (baseline.get(k, "—"), cell.get(k, "—")) for k in keys if cell.get(k) != baseline.get(k)}


def _get(flat: dict, key: str):
    try:
        return float(flat[key])
    except (KeyError, TypeError, ValueError):
        return None


def sparse_eval_warning(source, df: pd.DataFrame) -> str | None:
    """One line when completed runs have ``train.eval_every >= train.steps`` (their eval curves
    hold only the warm-start and final points); None otherwise or when configs do not say."""
    done = df.loc[df["status"] == RunStatus.completed.value, "run_dir"]
    sparse, schedules = [], set()
    for run_dir in done:
        flat = flatten(source.config(run_dir))
        every, steps = _get(flat, "train.eval_every"), _get(flat, "train.steps")
        if every is not None and steps is not None and every >= steps:
            sparse.append(run_dir)
            schedules.add((int(every), int(steps)))
    if not sparse:
        return None
    shown = ", ".join(f"train.eval_every={e} >= train.steps={s}" for e, s in sorted(schedules))
    return (f"warning: {shown} in {len(sparse)} of {len(done)} completed runs (e.g. {sparse[0]}): their eval "
            f"curves have only the warm-start and final points; set train.eval_every below train.steps for a "
            f"learning curve")
