"""How a run begins: its ranks, and whether it starts afresh, resumes, or has nothing to do.

Rank 0 decides (``begin``) and writes; the other ranks of a multi-process run follow the decision
it broadcasts. A run dir holding a checkpoint of the same config hash and seed resumes from it (same
run record, same run id); one whose summary already says completed is returned as is; anything else
starts from scratch, and nothing of an earlier attempt may leak into the new record.

Damaged state never blocks a run and is never dropped silently: a checkpoint that cannot be read
fails the run naming the file, and the next attempt moves it aside and starts afresh; lines of
``metrics.jsonl`` that are not JSON are kept aside in ``metrics.corrupt.jsonl`` when a run resumes;
an unreadable ``meta.json`` is written again, the run resuming only from a checkpoint of its own
config hash and seed.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import yaml

from trainer import checkpoint, distributed, registry
from trainer.identity import config_hash, run_meta, to_dict
from trainer.knobs import ConfigError
from trainer.provenance import code_version
from trainer.run_record import (
    IDENTITY_VERSION,
    META_FILE,
    METRICS_CORRUPT_FILE,
    METRICS_FILE,
    Meta,
    RunRecord,
    RunStatus,
    Summary,
    atomic_write_json,
    rank_error_file,
    read_jsonl,
)
from trainer.secrets import redact_config


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def start_ranks(cfg) -> int:
    """This process's rank; starts the process group when a launcher (torchrun, srun through
    submitit) set WORLD_SIZE > 1. Several ranks need the DeepSpeed engine."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        if cfg.engine.backend.value != "deepspeed":
            raise ConfigError(
                f"WORLD_SIZE={world} but engine.backend={cfg.engine.backend.value} is single-process: "
                "use engine=deepspeed_zero{0,1,2,3} for several ranks"
            )
        if registry.needs(cfg).whole_groups:
            raise ConfigError(
                f"WORLD_SIZE={world} but algorithm.loss={cfg.algorithm.loss} needs whole prompt groups per "
                "micro-batch, which sharding a mini-batch over ranks breaks; run it in one process"
            )
        distributed.init_from_env(str(resolve_device(cfg.engine.device)))
    return distributed.rank()


@dataclass
class Start:
    """``done`` (nothing to run: already completed, or failed on an unreadable checkpoint), or a
    fresh start (``prior`` None) or a resume."""

    done: Optional[Summary]
    prior: Optional[checkpoint.TrainingState] = None
    meta: Optional[Meta] = None
    summary: Optional[Summary] = None

    @property
    def first_step(self) -> int:
        return self.prior.step + 1 if self.prior is not None else 1


def begin(cfg, record: RunRecord, resume: bool, meta: Optional[Meta], log) -> Start:
    """Rank 0's decision for ``record``; a fresh start writes config and meta, a resume truncates
    the metrics to the checkpoint's step (the resumed run writes the rest again)."""
    chash = config_hash(cfg)
    old = record.read_meta()
    if old is not None and old.hash_version != IDENTITY_VERSION:
        raise ConfigError(
            f"{record.dir}: its record was written under identity version {old.hash_version}, and runs are now "
            f"identified by version {IDENTITY_VERSION} (docs/run-record.md), so it can neither resume nor be replaced "
            "silently: use another run dir, or delete this one")
    name = old.run_id if old is not None else record.dir.name
    damaged = old is None and record.meta_path.exists()
    if damaged:
        log(f"[{name}] WARNING: {META_FILE} is unreadable: it is written again, and the run resumes only from a "
            "checkpoint of this config hash and seed")
    same_run = damaged or (old is not None and old.config_hash == chash and old.seed == cfg.seed)
    last = record.read_summary()
    prior = None
    if resume and same_run and _failed_on_checkpoint(record, last):
        aside = checkpoint.move_aside(record.dir)
        log(f"[{name}] the last attempt could not read {last.error['checkpoint']}: the checkpoint is moved aside "
            f"to {aside.name}/ and the run starts afresh from step 0")
    elif resume and same_run:
        try:
            prior = checkpoint.peek(record.dir)
        except checkpoint.CorruptCheckpoint as e:
            return Start(done=_fail_on_checkpoint(record, last, e, log, name))
        if damaged and prior is not None and (prior.config_hash, prior.seed) != (chash, cfg.seed):
            prior = None  # another run's checkpoint: this run starts afresh
        if prior is None and not damaged and last is not None and last.status == RunStatus.completed:
            log(f"[{old.run_id}] already completed: nothing to do")
            return Start(done=last)
    if prior is None or damaged:
        meta = meta or run_meta(cfg, record.dir)
        meta.created = meta.created or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        meta.code_version = meta.code_version or code_version()
        meta.world_size = distributed.world_size()
        record.write_meta(meta)
    if prior is None:
        checkpoint.remove(record.dir)
        record.metrics_path.unlink(missing_ok=True)
        record.evals_path.unlink(missing_ok=True)
        (record.dir / METRICS_CORRUPT_FILE).unlink(missing_ok=True)
        record.write_config(yaml.safe_dump(redact_config(to_dict(cfg)), sort_keys=False))  # a record: the run has cfg
        return Start(done=None, meta=meta, summary=Summary())
    # the same run continues: meta.json (run id, creation, code version) stays as first written
    summary = Summary.from_json(prior.summary) or Summary()
    _keep_metrics_to(record, prior.step, summary, log, name)
    summary.status, summary.error = RunStatus.running, None
    summary.attempt += 1
    summary.resumed_from_step = prior.step
    return Start(done=None, prior=prior, meta=meta if damaged else old, summary=summary)


def _failed_on_checkpoint(record: RunRecord, last: Optional[Summary]) -> bool:
    """The last attempt failed because it could not read the checkpoint that is still there."""
    return (last is not None and last.status == RunStatus.failed and isinstance(last.error, dict)
            and bool(last.error.get("checkpoint")) and checkpoint.checkpoint_root(record.dir).exists())


def _fail_on_checkpoint(record: RunRecord, last: Optional[Summary], e: checkpoint.CorruptCheckpoint, log,
                        name: str) -> Summary:
    """The run cannot resume and must not silently start over: failed, naming the file."""
    summary = last or Summary()
    summary.status, summary.error = RunStatus.failed, e.error(summary.steps_completed)
    record.write_summary(summary)
    log(f"[{name}] FAILED: {summary.error['cause']}")
    return summary


def _keep_metrics_to(record: RunRecord, step: int, summary: Summary, log, name: str) -> None:
    """Truncate ``metrics.jsonl`` to the checkpoint's step; lines that are not JSON are kept aside in
    ``metrics.corrupt.jsonl`` (with their line numbers) and warned of, never dropped silently."""
    corrupt: list = []
    rows = [r for r in read_jsonl(record.metrics_path, corrupt) if r.get("step", 0) <= step]
    record.rewrite_metrics(rows)
    record.rewrite_evals([r for r in record.evals() if r.step <= step])  # evals.jsonl: cut back alike
    if not corrupt:
        return
    record.keep_aside(corrupt)
    lost = sorted(set(range(step + 1)) - {r.get("step") for r in rows})
    text = (f"{METRICS_FILE} line(s) {', '.join(str(n) for n, _ in corrupt)} were not JSON: kept aside in "
            f"{METRICS_CORRUPT_FILE}; " + (f"step(s) {lost} are missing from the record" if lost
                                            else "no step up to the checkpoint is missing"))
    log(f"[{name}] WARNING: {text}")
    if lost:
        summary.warnings = [*(summary.warnings or []), text]


def write_rank_error(run_dir, error: dict) -> None:
    """A rank other than 0 failed: leave the cause where ``grpolab status`` users look."""
    rank = distributed.rank()
    atomic_write_json(Path(run_dir) / rank_error_file(rank), {"rank": rank, **error})
    print(f"[grpolab rank {rank}] FAILED: {error.get('cause')}", file=sys.stderr, flush=True)


def process_age_s() -> Optional[float]:
    """Seconds since this process started (Linux /proc), for the job-overhead figures."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return time.time() - (btime + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
