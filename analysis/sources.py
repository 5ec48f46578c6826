"""Which source of runs a command reads, and where its output goes by default.

``open_source(arg)``: a sweep dir on disk (:class:`~analysis.records.DirSource`) or
``wandb://ENTITY/PROJECT/SWEEP_ID`` (:class:`~analysis.wandb_source.WandbSource`); both give the
same records frame. This module sits above both (they never import it), so there is no cycle.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.records import DirSource, RunSource
from analysis.wandb_source import SCHEME, WandbSource
from trainer.run_record import META_FILE
from trainer.sweep_names import find_sweep


def open_source(arg: str, api=None) -> RunSource:
    """The source a command-line argument names: ``wandb://ENTITY/PROJECT/SWEEP_ID`` (the W&B runs
    of that project whose group is the sweep id; ``api`` defaults to ``wandb.Api()``), else a sweep
    dir on disk. ValueError when the dir does not exist or the URL is malformed."""
    if str(arg).startswith(SCHEME):
        return WandbSource.from_url(str(arg), api=api)
    path = Path(arg)
    if not path.is_dir():
        raise ValueError(f"sweep dir does not exist: {path}")
    return DirSource(path)


def default_out_dir(source) -> Path:
    """Where a command writes by default: the sweep dir, or ``./<sweep id>/`` for a W&B source."""
    root = getattr(source, "root", None)
    return Path(root) if root is not None else Path(source.name)


def runs_frame(source) -> pd.DataFrame:
    """``source.runs()``, the records frame; ValueError saying where no run was found."""
    df = source.runs()
    if df.empty:
        root = getattr(source, "root", None)
        where = f"(no {META_FILE}) found under {root}" if root is not None else \
            f"found in {getattr(source, 'url', source.name)}"
        raise ValueError(f"no runs {where}")
    return df


def resolve_source(arg: str, root: str = "outputs", api=None) -> RunSource:
    """The source a command line names, as every command names a sweep: ``wandb://...``, a sweep dir
    (grid or tune), or a sweep id / tune study name under ``root`` (``trainer.sweep_names.find_sweep``)."""
    if str(arg).startswith(SCHEME):
        return WandbSource.from_url(str(arg), api=api)
    return DirSource(find_sweep(arg, root))
