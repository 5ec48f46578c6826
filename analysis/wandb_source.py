"""Runs of one sweep fetched from the W&B API, as a :class:`~analysis.records.RunSource`.

``WandbSource("entity/project", "sweep-id")`` gives the same records frame, history frames and
configs as :class:`~analysis.records.DirSource` on the sweep's run records, so ``build_table``,
``sweep_figures`` and ``render_report`` work unchanged. It reads what ``trainer/tracking.py``'s
``WandbTracker`` logs (docs/tracking.md):

==================  ============================================================================
records frame       W&B run
==================  ============================================================================
``run_dir``         the run's path ``entity/project/<W&B run id>`` (what ``history``/``config`` take)
``run_id`` …        ``config["run_meta"]``: ``run_id, cell_id, config_hash, seed, label``
                    (``run.name`` / ``run.job_type`` when absent)
swept keys          ``config["run_meta"]["swept"]`` (the ``key=value`` tags when absent)
``status``          ``summary["summary/status"]``; without it, from ``run.state`` (running,
                    failed/crashed/killed → failed, preempted); a finished run with no status → missing
metrics             every numeric ``summary/<key>`` (W&B's own per-key last values are ignored)
history frame       ``run.scan_history()`` (every row, unsampled): ``_step`` → ``step``, W&B's ``_*``
                    keys dropped
config              ``run.config`` without ``run_meta``
==================  ============================================================================

The runs are those of the project whose ``group`` is the sweep id (``Api.runs(project,
filters={"group": sweep_id})``). W&B does not hold the sweep's plan (``sweep.json``); each run's
``run_meta.plan_index`` (its position in the plan) rebuilds the plan's value order and default
baseline (the first planned cell). Runs logged without it sort by value, and the first row is the
default baseline (``--baseline`` chooses another). Each run's history is fetched once and cached.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.records import records_frame
from trainer.run_record import RunStatus

SCHEME = "wandb://"
SUMMARY_PREFIX = "summary/"
META_KEY = "run_meta"
# W&B's run states (``run.state``) → the run status they imply, for runs logged without one
_STATE = {"running": RunStatus.running, "pending": RunStatus.running, "failed": RunStatus.failed,
          "crashed": RunStatus.failed, "killed": RunStatus.failed, "preempting": RunStatus.preempted,
          "preempted": RunStatus.preempted}


def parse_url(url: str) -> tuple[str, str]:
    """``wandb://ENTITY/PROJECT/SWEEP_ID`` (or ``wandb://PROJECT/SWEEP_ID``, default entity) →
    (project path, sweep id); ValueError naming the expected form."""
    parts = url.removeprefix(SCHEME).strip("/").split("/")
    if not url.startswith(SCHEME) or len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"{url!r}: expected {SCHEME}ENTITY/PROJECT/SWEEP_ID (or {SCHEME}PROJECT/SWEEP_ID)")
    return "/".join(parts[:-1]), parts[-1]


def _plain(obj) -> dict:
    """A dict of a W&B mapping (``run.config`` is a dict; ``run.summary`` is dict-like, nested
    values are sub-dicts)."""
    return {k: _plain(v) if hasattr(v, "items") else v for k, v in obj.items()} if obj is not None else {}


def _summary(run) -> dict:
    """The tracker's ``summary/<key>`` entries as {key: value}; flat keys, or nested under
    ``summary`` should a server nest keys at ``/``."""
    raw = _plain(run.summary)
    out = {k[len(SUMMARY_PREFIX):]: v for k, v in raw.items() if k.startswith(SUMMARY_PREFIX)}
    nested = raw.get("summary")
    if isinstance(nested, dict):
        out = {**nested, **out}
    return out


def _tag_value(text: str):
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, str, bool)) or value is None else text


def _swept_from_tags(tags) -> dict:
    """``key=value`` tags (one per swept key, plus free tags without ``=``) → {key: value}."""
    out = {}
    for tag in tags or ():
        key, sep, value = str(tag).partition("=")
        if sep and key:
            out[key] = _tag_value(value)
    return out


class WandbSource:
    """The runs of W&B project ``project`` (``entity/project``) in group ``sweep_id``.

    ``api``: a ``wandb.Api()`` (created on first use when None). ``plan``: the sweep's
    ``sweep.json`` as a dict, when at hand, for the plan's value order and default baseline."""

    def __init__(self, project: str, sweep_id: str, api: Any = None, plan: dict | None = None):
        self.project = project.strip("/")
        self.sweep_id = sweep_id
        self.name = sweep_id
        self.url = f"{SCHEME}{self.project}/{sweep_id}"
        self._api = api
        self._plan = plan
        self._runs: dict[str, Any] | None = None
        self._history: dict[str, pd.DataFrame] = {}

    @classmethod
    def from_url(cls, url: str, api: Any = None, plan: dict | None = None) -> "WandbSource":
        return cls(*parse_url(url), api=api, plan=plan)

    def __repr__(self) -> str:
        return f"WandbSource({self.url})"

    @property
    def api(self):
        if self._api is None:
            import wandb

            try:
                self._api = wandb.Api()
            except wandb.errors.UsageError as e:  # wandb's own check: no API key configured, most often
                said = (str(e).strip().splitlines() or [""])[0]
                what = "no W&B API key is configured" if "api key" in said.lower() else f"W&B: {said}"
                raise ValueError(f"{self.url}: {what}; run `wandb login` or set WANDB_API_KEY") from None
        return self._api

    def _fetch(self) -> dict[str, Any]:
        """{run_dir: Run}, fetched once. ``lazy=False``: config and summary come with the listing
        instead of one request per run."""
        if self._runs is None:
            runs = self.api.runs(self.project, filters={"group": self.sweep_id}, lazy=False)
            self._runs = {f"{self.project}/{run.id}": run for run in runs}
        return self._runs

    def _run(self, run_dir: str):
        try:
            return self._fetch()[run_dir]
        except KeyError:
            raise ValueError(f"{run_dir!r} is not a run of {self.url}") from None

    @property
    def plan(self) -> dict:
        """The plan given, else what W&B holds of it: the sweep id and the first run's code version."""
        if self._plan is not None:
            return self._plan
        metas = [m for m in (_plain(r.config).get(META_KEY) or {} for r in self._fetch().values()) if m]
        meta = metas[0] if metas else {}
        plan = {"sweep_id": self.sweep_id}
        if meta.get("code_version"):
            plan["code_version"] = meta["code_version"]
        # The plan's run order, from each run's plan_index (runs logged before it existed: none)
        indexed = sorted((m["plan_index"], m.get("swept") or {}) for m in metas if isinstance(m.get("plan_index"), int))
        if indexed:
            plan["runs"] = [{"swept": swept} for _, swept in indexed]
        return plan

    def runs(self) -> pd.DataFrame:
        runs = []
        for run_dir, run in self._fetch().items():
            meta = _plain(run.config).get(META_KEY) or {}
            row = {"run_dir": run_dir, "run_id": meta.get("run_id") or run.name or run.id}
            for key in ("cell_id", "config_hash", "seed", "label"):
                if key in meta:
                    row[key] = meta[key]
            if "label" not in row and (meta.get("variant") or run.job_type):  # identity version 1
                row["label"] = meta.get("variant") or run.job_type
            swept = meta.get("swept") if isinstance(meta.get("swept"), dict) else _swept_from_tags(run.tags)
            summary = _summary(run)
            if "status" in summary:
                row["status"] = str(summary["status"])
            else:
                row["status"] = _STATE.get(str(run.state).lower(), RunStatus.missing).value
            runs.append((row, swept, summary))
        runs.sort(key=lambda r: str(r[0]["run_id"]))  # DirSource's order: run dirs by name
        return records_frame(runs, self.plan)

    def history(self, run_dir: str) -> pd.DataFrame:
        if run_dir not in self._history:
            rows = [{("step" if k == "_step" else k): v for k, v in row.items()
                     if k == "_step" or not k.startswith("_")} for row in self._run(run_dir).scan_history()]
            df = pd.DataFrame.from_records(rows)
            if "step" in df.columns:
                df = df[["step", *(c for c in df.columns if c != "step")]]
            self._history[run_dir] = df
        return self._history[run_dir]

    def config(self, run_dir: str) -> dict:
        config = _plain(self._run(run_dir).config)
        return {k: v for k, v in config.items() if k not in (META_KEY, "_wandb", "wandb_version")}
