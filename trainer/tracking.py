"""Experiment trackers: views fed from the run record, never a second source of truth.

The trainer appends a row to ``metrics.jsonl`` and then hands the same row to ``Tracker.log``; a
resumed (requeued) run first calls ``replay`` so the tracker catches up with whatever the record
holds and it has not seen. ``tracker=none`` is ``NullTracker``; ``tracker=wandb`` is
``WandbTracker``: one W&B run per cell, ``group`` = sweep id, ``job_type`` = variant, one tag per
swept ``key=value``, the nested resolved config; secrets redacted (``trainer.secrets``).

W&B is offline unless asked otherwise (``mode="auto"`` goes online only when a project is
configured *and* an API key is available): the run's files land in ``<run_dir>/wandb/`` and
``wandb sync <run_dir>/wandb/offline-run-*`` uploads them later (docs/tracking.md).

A requeued job gets the same W&B run id (a pure function of sweep id and run id) and resumes it
with ``resume="allow"``; the last step it logged is kept in ``<run_dir>/wandb/grpolab_tracker.json``
so steps are never logged twice, whichever attempt wrote them.
"""

from __future__ import annotations

import hashlib
import json
import netrc
import os
import re
import shlex
from pathlib import Path
from typing import Iterable, Optional, Protocol

from trainer.run_record import Meta, RunRecord, RunStatus, Summary, atomic_write_json, read_json_object
from trainer.secrets import is_secret_key, redact_config, redact_override, redact_text, redact_value

WANDB_DIR = "wandb"  # in the run dir: W&B's files and the tracker's state
STATE_FILE = "grpolab_tracker.json"
_META_LOGGED = ("run_id", "sweep_id", "cell_id", "config_hash", "hash_version", "seed", "swept", "label",
                "code_version", "created", "plan_index")  # never ``overrides``: they may carry launcher.env values


class Tracker(Protocol):
    last_step: Optional[int]  # the last step this run has sent, by any attempt (None: none)

    def log(self, metrics: dict, step: int) -> None:
        """One step's metrics (the run record's row without ``step``)."""

    def finish(self, summary: Summary) -> None:
        """End the run with the run record's final summary (its ``status`` says how it ended)."""

    def describe(self) -> str:
        """One line for the run's log: where the tracker's data goes ("" when nowhere)."""


class NullTracker:
    """``tracker=none``: the run record is the only output."""

    last_step: Optional[int] = None

    def describe(self) -> str:
        return ""

    def log(self, metrics: dict, step: int) -> None:
        pass

    def finish(self, summary: Summary) -> None:
        pass


def wandb_run_id(meta: Meta) -> str:
    """W&B run id of a run record: readable ``<sweep id>-<run id>`` when it fits W&B's rules
    (≤ 64 chars of ``[A-Za-z0-9_.-]``), else a hash of it. The same cell of the same sweep, however
    often it is requeued, always gets the same id; the same cell in another sweep does not."""
    raw = f"{meta.sweep_id or 'nosweep'}-{meta.run_id}"
    clean = re.sub(r"[^A-Za-z0-9_.-]", "-", raw)
    if len(clean) <= 64:
        return clean
    return f"{clean[:40]}-{hashlib.sha1(raw.encode()).hexdigest()[:16]}"


def wandb_tags(swept: dict, extra: Iterable[str] = ()) -> list[str]:
    """One tag per swept ``key=value`` (W&B caps a tag at 64 characters), secrets redacted."""
    return [t[:64] for t in [*(redact_override(f"{k}={v}") for k, v in (swept or {}).items()),
                             *(redact_text(str(t)) for t in extra)]]


def _have_api_key() -> bool:
    """Whether W&B can authenticate (env or ~/.netrc); the key itself is never read into anything."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        rc = netrc.netrc(os.environ.get("NETRC") or None)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    return rc.authenticators(host) is not None


def resolve_mode(mode: str, project: Optional[str]) -> str:
    """``offline``/``online``/``disabled`` as given; ``auto``: ``WANDB_MODE`` if set, else online
    only with a configured project and an available API key, else offline."""
    if mode not in ("auto", "offline", "online", "disabled"):
        raise ValueError(f"tracker.mode={mode!r}: must be one of auto, offline, online, disabled")
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env in ("offline", "online", "disabled"):
        return env
    return "online" if project and _have_api_key() else "offline"


def sync_command(paths: str, project: Optional[str], entity: Optional[str] = None) -> str:
    """The ``wandb sync`` command that uploads offline runs (``paths``: a dir or a shell glob)."""
    return " ".join(["wandb", "sync", "--project", shlex.quote(project or "grpolab"),
                     *(["--entity", shlex.quote(entity)] if entity else []), paths])


def _offline_reason(requested: str, project: Optional[str]) -> str:
    if requested == "offline":
        return "tracker.mode=offline"
    if os.environ.get("WANDB_MODE") == "offline":
        return "WANDB_MODE=offline"
    if not project:
        return "tracker.mode=auto without tracker.project"
    return "tracker.mode=auto and no API key: wandb login or WANDB_API_KEY makes it online"


def mode_line(requested: str, project: Optional[str], entity: Optional[str], files: str) -> str:
    """What a sweep or a run says of W&B before it starts (``requested``: ``tracker.mode``): online or
    offline and why, where the files go and, offline, the command that uploads them (``files``: a dir
    or a shell glob of offline-run dirs)."""
    mode = resolve_mode(requested, project)
    if mode == "disabled":
        return "W&B disabled: nothing is logged to W&B"
    if mode == "online":
        return f"W&B online: project {(entity + '/') if entity else ''}{project or 'grpolab'}; local files in {files}"
    return (f"W&B offline ({_offline_reason(requested, project)}): files in {files}; upload them with: "
            f"{sync_command(files, project, entity)}")


def _loggable(metrics: dict) -> dict:
    """Numbers only; nulls (non-finite values in the record) are left out, never logged as NaN."""
    return {k: v for k, v in metrics.items() if k != "step" and v is not None and not isinstance(v, (dict, list, str))}


class WandbTracker:
    """One W&B run for one run record (see the module docstring)."""

    def __init__(
        self,
        run_dir: str | Path,
        config: dict,
        meta: Meta,
        *,
        project: Optional[str] = None,
        entity: Optional[str] = None,
        mode: str = "offline",
        tags: Iterable[str] = (),
        system_stats: bool = True,
    ):
        import wandb  # only a run with tracker=wandb pays for the import

        self.run_dir = Path(run_dir)
        self.project, self.entity, self.requested_mode = project, entity, mode
        self.mode = resolve_mode(mode, project)
        self.run_id = wandb_run_id(meta)
        self._state_path = self.run_dir / WANDB_DIR / STATE_FILE
        state = read_json_object(self._state_path) or {}
        self.last_step: Optional[int] = state.get("last_step") if state.get("run_id") == self.run_id else None
        run_meta = {k: v for k, v in meta.to_json().items() if k in _META_LOGGED}
        run_meta["swept"] = {k: redact_value(k, v) for k, v in (run_meta.get("swept") or {}).items()}
        (self.run_dir / WANDB_DIR).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project or "grpolab",
            entity=entity,
            id=self.run_id,
            name=meta.run_id,
            resume="allow",
            dir=str(self.run_dir),
            mode=self.mode,
            group=meta.sweep_id or None,
            job_type=meta.label or None,
            tags=wandb_tags(meta.swept, tags),
            config={**redact_config(config), "run_meta": redact_config(run_meta)},
            reinit="create_new",  # several runs may be live in one process (tune workers are threads)
            settings=wandb.Settings(
                silent=True,
                console="off",  # stdout already goes to the job's log; no stream wrapping in jobs
                save_code=False,
                disable_code=True,
                disable_git=True,  # code_version (commit, dirty) is in run_meta
                x_disable_meta=True,  # no command line (it may carry launcher.env values) or host info
                x_disable_stats=not system_stats,
            ),
        )
        self._write_state()

    def describe(self) -> str:
        """``W&B offline: files in <dir>; upload them with: wandb sync ...`` (online: the run's URL)."""
        if self.mode == "online" and getattr(self.run, "url", None):
            return f"W&B online: {self.run.url} (local files in {self.run.settings.sync_dir})"
        return mode_line(self.requested_mode, self.project, self.entity, shlex.quote(str(self.run.settings.sync_dir)))

    def _write_state(self) -> None:
        atomic_write_json(self._state_path, {"run_id": self.run_id, "last_step": self.last_step, "mode": self.mode})

    def log(self, metrics: dict, step: int) -> None:
        """Log one step; a step at or before the last one logged (by any attempt) is skipped."""
        if self.last_step is not None and step <= self.last_step:
            return
        self.run.log(_loggable(metrics), step=int(step))
        self.last_step = int(step)
        self._write_state()

    def finish(self, summary: Summary) -> None:
        """``summary/<key>`` for each scalar of the summary; exit code 0 for a run that completed or
        will resume (preempted), 1 otherwise."""
        flat = {f"summary/{k}": v for k, v in summary.to_json().items()
                if isinstance(v, (int, float, str, bool)) and not is_secret_key(k)}
        self.run.summary.update(flat)
        if summary.status == RunStatus.preempted:
            self.run.mark_preempting()
        sync_file = Path(self.run.settings.sync_file)
        self.run.finish(exit_code=0 if summary.status in (RunStatus.completed, RunStatus.preempted) else 1)
        if self.mode == "offline":
            _wait_for_exit_record(sync_file)


def _wait_for_exit_record(path: Path, timeout_s: float = 60.0) -> bool:
    """Offline, ``run.finish()`` can return before wandb-core has flushed the transaction log (seen
    under CPU load); wait until its final ``exit`` record is on disk, so that a requeue, a
    ``wandb sync`` or a reader right after finds the whole run."""
    import time

    deadline = time.time() + timeout_s
    while True:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in read_wandb_records(path)):
                return True
        except Exception:  # a half-written chunk: read again
            pass
        if time.time() > deadline:
            return False
        time.sleep(0.05)


def make_tracker(config: dict, run_dir: str | Path, meta: Meta) -> Tracker:
    """The tracker a resolved config asks for: ``config["tracker"]`` holds ``name`` (none/wandb) and,
    for wandb, ``project``, ``entity``, ``mode`` (auto/offline/online/disabled), ``tags``. Ranks
    other than 0 (env ``RANK``) of a distributed run get a ``NullTracker``."""
    t = config.get("tracker") or {}
    name = getattr(t.get("name", "none"), "value", t.get("name", "none"))
    if name in (None, "none") or int(os.environ.get("RANK", "0") or 0) != 0:
        return NullTracker()  # in a multi-process run only rank 0 reports
    if name == "wandb":
        mode = getattr(t.get("mode"), "value", t.get("mode")) or "auto"
        return WandbTracker(run_dir, config, meta, project=t.get("project"), entity=t.get("entity"),
                            mode=mode, tags=t.get("tags") or ())
    raise ValueError(f"tracker.name={name!r}: must be one of none, wandb")


def replay(run_dir: str | Path, tracker: Tracker) -> int:
    """Feed the run record's ``metrics.jsonl`` to ``tracker`` in step order; return the rows logged.

    Steps the tracker already has (``tracker.last_step``) are skipped, so calling this at the start
    of a resumed run logs exactly the steps the previous attempt recorded but never sent."""
    rows = sorted((r for r in RunRecord(run_dir, writable=False).metrics() if "step" in r), key=lambda r: r["step"])
    last = getattr(tracker, "last_step", None)
    n = 0
    for row in rows:
        if last is not None and row["step"] <= last:
            continue
        tracker.log({k: v for k, v in row.items() if k != "step"}, row["step"])
        n += 1
    return n


# ---------------------------------------------------------------- reading offline runs back
_BLOCK = 32 * 1024  # LevelDB log format, as W&B writes its .wandb transaction log
_HEADER = 7  # ":W&B", magic 0xBEE1, version


def read_wandb_records(path: str | Path):
    """Yield the ``wandb_internal_pb2.Record`` messages of a ``.wandb`` file (offline or synced)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    pos, parts = _HEADER, []
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a chunk header is zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            continue
        if kind in (1, 2):  # full, first
            parts = [chunk]
        else:  # middle, last
            parts.append(chunk)
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(b"".join(parts))
            yield rec


def read_offline_run(path: str | Path) -> dict:
    """``{"run_id", "group", "job_type", "tags", "config", "history"}`` of one ``.wandb`` file; history
    rows are dicts with ``_step`` and the logged metrics (W&B's own ``_runtime``/``_timestamp`` dropped)."""
    out: dict = {"run_id": None, "group": None, "job_type": None, "tags": [], "config": {}, "history": []}

    def key_of(item) -> str:
        return item.key or "/".join(item.nested_key)

    for rec in read_wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(run_id=r.run_id, group=r.run_group, job_type=r.job_type, tags=list(r.tags))
            for u in r.config.update:
                out["config"][key_of(u)] = json.loads(u.value_json)
        elif kind == "config":
            for u in rec.config.update:
                out["config"][key_of(u)] = json.loads(u.value_json)
        elif kind == "history":
            row = {key_of(i): json.loads(i.value_json) for i in rec.history.item}
            out["history"].append({k: v for k, v in row.items() if k not in ("_runtime", "_timestamp")})
    out["config"].pop("_wandb", None)
    return out


def offline_run_files(run_dir: str | Path) -> list[Path]:
    """The ``.wandb`` files of a run dir, oldest attempt first (one per attempt of a requeued run)."""
    return sorted((Path(run_dir) / WANDB_DIR).glob("offline-run-*/run-*.wandb"))
