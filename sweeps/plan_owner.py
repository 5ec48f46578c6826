"""A sweep directory is owned by its plan: ``sweep.json`` says which runs belong to it.

Re-running the plan's command (or one whose cells the plan already holds) resumes it. A command
that plans other cells under an existing ``sweep.id`` is refused: its runs would sit beside the old
ones and a table would pool them. With ``--append`` the new cells join the plan, and every
invocation is kept in the plan's ``history``. When an appended cell has the same swept values as an
old one but another config (say ``train.steps`` differs), the keys that tell them apart become swept
keys of the whole plan, so the table shows them as separate rows instead of pooling them.

Everything here runs under the sweep's lock (``trainer.locks.sweep_lock``): two invocations never
write ``sweep.json`` or ``jobs.json`` at once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from typing import Optional

from sweeps.plan import SweepPlan
from trainer.identity import identity_view
from trainer.knobs import ConfigError
from trainer.locks import sweep_lock
from trainer.provenance import code_version
from trainer.record_check import read_checked, warn
from trainer.run_record import atomic_write_json
from trainer.secrets import redact_overrides, redact_value

PLAN_VERSION = 2  # 1: no history, one invocation per sweep dir
DAMAGED_SUFFIX = ".damaged"


@dataclass
class Ownership:
    """What this invocation does to the sweep dir's plan: ``new``, ``resume`` or ``append``."""

    kind: str
    plan: dict  # the sweep.json to write


def read_existing(plan: SweepPlan) -> Optional[dict]:
    """The sweep's current ``sweep.json``; None when there is none.

    A damaged one (any bytes that are not a plan) cannot say which runs are the sweep's. If every
    record under ``runs/`` is a cell of this command, nothing can pool: the plan is rebuilt from the
    command (``write`` keeps the damaged file beside it) with a warning. Otherwise it is refused."""
    path = plan.paths.plan
    data, problem = read_checked(path)
    if data is not None and not isinstance(data.get("runs"), list):
        problem = "no runs list"
    if problem is None:
        return data
    records = sorted(d.name for d in plan.paths.runs.glob("*") if d.is_dir()) if plan.paths.runs.is_dir() else []
    foreign = [name for name in records if name not in {r.name for r in plan.runs}]
    if foreign:
        raise ConfigError(f"sweep.id={plan.sweep_id}: {path} is {problem}, and {len(foreign)} records under "
                          f"{plan.paths.runs} are not cells of this command (e.g. {foreign[0]}), so which runs "
                          "belong to this sweep is unknown: move the sweep dir aside, or use a new sweep.id")
    warn(path, problem, "rebuilt from this command, whose cells include every record under runs/ "
                        f"(the damaged file is kept as {path.name}{DAMAGED_SUFFIX})")
    return None


def _entry(run) -> dict:
    """A run of ``sweep.json``, secrets redacted (``trainer.secrets``; the run's config keeps them)."""
    return {"name": run.name, "overrides": redact_overrides(run.overrides),
            "swept": {k: redact_value(k, v) for k, v in run.swept.items()}, "steps": run.cfg.train.steps}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _history(existing: dict) -> list[dict]:
    """The plan's invocations; a version-1 plan had one, its command."""
    if isinstance(existing.get("history"), list):
        return list(existing["history"])
    return [{"kind": "new", "command": existing.get("command"), "created": existing.get("created"),
             "code_version": existing.get("code_version"),
             "added": [r.get("name") for r in existing["runs"] if isinstance(r, dict)]}]


def reconcile(plan: SweepPlan, command: list[str], existing: Optional[dict], append: bool) -> Ownership:
    """This invocation's effect on the sweep dir's plan, or ``ConfigError`` saying why not."""
    event = {"command": redact_overrides(command), "created": _now(), "code_version": code_version()}
    if existing is None:
        return Ownership("new", _plan_json(plan, [_entry(r) for r in plan.runs], list(plan.grid.keys),
                                           [{"kind": "new", **event, "added": [r.name for r in plan.runs]}]))
    old_runs = [r for r in existing["runs"] if isinstance(r, dict) and isinstance(r.get("name"), str)]
    old_names = {r["name"] for r in old_runs}
    new = [r for r in plan.runs if r.name not in old_names]
    history = _history(existing)
    if not new:
        swept = {r["name"]: r.get("swept") for r in old_runs}
        for run in plan.runs:  # labelled as the plan labels them (an append may have added keys)
            run.swept = swept.get(run.name) or run.swept
        return Ownership("resume", {**existing, "version": PLAN_VERSION,
                                    "history": history + [{"kind": "resume", **event, "added": []}]})
    if not append:
        example = new[0]
        shown = " ".join(redact_overrides(example.overrides))
        raise ConfigError(
            f"sweep.id={plan.sweep_id}: {plan.sweep_dir} belongs to another plan ({len(old_runs)} cells, first run "
            f"by: {' '.join(str(c) for c in history[0].get('command') or [])}); this command plans "
            f"{len(new)} cells it does not hold (e.g. {example.name}: {shown}). Re-run that "
            "plan's own command to resume it, use a new sweep.id, or add --append to extend the plan")
    keys = list(dict.fromkeys([*existing.get("swept_keys", []), *plan.grid.keys]))
    entries = [dict(r) for r in old_runs] + [_entry(r) for r in new]
    keys = _separating_keys(entries, keys, {r.name: r.cfg for r in plan.runs})
    for run in plan.runs:  # the cells launched now are labelled with the merged keys
        run.swept = next(e["swept"] for e in entries if e["name"] == run.name)
    history.append({"kind": "append", **event, "added": [r.name for r in new]})
    return Ownership("append", _plan_json(plan, entries, keys, history, base=existing.get("base_overrides")))


def _separating_keys(entries: list[dict], keys: list[str], cfgs: dict) -> list[str]:
    """``keys`` plus the result keys that tell apart cells with the same swept values; fills every
    entry's ``swept`` with a value for each key (from its config when it was not swept)."""
    from sweeps.compose import compose

    views: dict[str, dict] = {}

    def view(name: str) -> dict:  # composed only for the entries that need it (~0.1 s each)
        if name not in views:
            e = next(e for e in entries if e["name"] == name)
            views[name] = identity_view(cfgs.get(name) or compose(list(e.get("overrides") or [])))
        return views[name]

    cell = lambda e: e["name"].rsplit("_s", 1)[0]  # noqa: E731  the config hash: runs of one cell differ by seed
    while True:
        for e in entries:
            e["swept"] = {**{k: view(e["name"]).get(k) for k in keys if k not in (e.get("swept") or {})},
                          **(e.get("swept") or {})}
        groups: dict[str, list[dict]] = {}
        for e in entries:
            groups.setdefault(json.dumps([e["swept"].get(k) for k in keys if k != "seed"], default=str), []).append(e)
        extra = []
        for group in groups.values():
            if len({cell(e) for e in group}) > 1:
                differ = {k for e in group for k in view(e["name"])
                          if len({json.dumps(view(o["name"]).get(k), default=str) for o in group}) > 1}
                extra += sorted(differ - set(keys) - {"seed"})
        if not extra:
            return keys
        keys = keys + list(dict.fromkeys(extra))


def _plan_json(plan: SweepPlan, entries: list[dict], keys: list[str], history: list[dict], base=None) -> dict:
    return {
        "version": PLAN_VERSION,
        "sweep_id": plan.sweep_id,
        "command": history[0].get("command"),
        "swept_keys": keys,
        "base_overrides": redact_overrides(plan.grid.base) if base is None else base,
        "code_version": code_version(),
        "launcher": plan.runs[0].cfg.launcher.name.value if plan.runs else None,
        "runs": entries,
        "created": history[0].get("created"),
        "history": history,
    }


def write(plan: SweepPlan, ownership: Ownership) -> None:
    path = plan.paths.plan
    if ownership.kind == "new" and path.exists():  # a damaged plan (read_existing): kept, not overwritten
        os.replace(path, path.with_name(path.name + DAMAGED_SUFFIX))
    atomic_write_json(path, ownership.plan)


def claim(plan: SweepPlan, command: list[str], append: bool = False) -> Ownership:
    """Reconcile ``plan`` with the sweep dir's and write the result, under the sweep's lock."""
    with sweep_lock(plan.sweep_dir):
        ownership = reconcile(plan, command, read_existing(plan), append)
        write(plan, ownership)
    return ownership
