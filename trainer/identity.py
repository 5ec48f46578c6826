"""Who a run is: its config as plain data, the hash that identifies its cell, and its ``Meta``.

Identity is derived, never typed: the hash covers what can change a run's result (everything but
the sections below and the seed), so runs of one cell with different seeds share it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from trainer.run_record import Meta

# Keys that never change results: excluded from the config hash that identifies a cell.
NON_RESULT_KEYS = ("seed", "launcher", "tracker", "sweep", "tune", "paths")


def to_dict(obj: Any) -> Any:
    """JSON-able nested dict of a config dataclass (enums as their values)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def stable_hash(obj: Any, length: int = 12) -> str:
    text = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def config_hash(cfg) -> str:
    """Identity of a cell: everything that changes results except the seed (runs of one cell share it)."""
    d = to_dict(cfg)
    return stable_hash({k: v for k, v in d.items() if k not in NON_RESULT_KEYS})


def variant_label(cfg) -> str:
    """The variant a run's tables and W&B runs are labelled with."""
    return cfg.algorithm.name


def run_meta(cfg, run_id: str | Path, *, sweep_id: Optional[str] = None, swept: Optional[dict] = None,
             overrides: Optional[list] = None, plan_index: Optional[int] = None, tune: Optional[dict] = None,
             code_version: Optional[dict] = None) -> Meta:
    """The ``Meta`` of a run of ``cfg``: identity from the config, labels from whoever launches it.
    ``created``, ``code_version`` (unless given: SLURM takes it at submit) and ``world_size`` are
    filled by the run itself when it starts afresh."""
    chash = config_hash(cfg)
    return Meta(run_id=Path(run_id).name, config_hash=chash, cell_id=chash, seed=cfg.seed, variant=variant_label(cfg),
                sweep_id=sweep_id, swept=dict(swept or {}), overrides=list(overrides or []), plan_index=plan_index,
                tune=tune, code_version=dict(code_version or {}))
