"""How a run begins: its ranks, and whether it starts afresh, resumes, or has nothing to do.

Rank 0 decides (``begin``) and writes; the other ranks of a multi-process run follow the decision
it broadcasts. A run dir holding a checkpoint of the same config hash and seed resumes from it (same
run record, same run id); one whose summary already says completed is returned as is; anything else
starts from scratch, and nothing of an earlier attempt may leak into the new record.
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
    Meta,
    RunRecord,
    RunStatus,
    Summary,
    atomic_write_json,
    rank_error_file,
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
    """``done`` (already completed: nothing to do), or a fresh start (``prior`` None) or a resume."""

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
    same_run = old is not None and old.config_hash == chash and old.seed == cfg.seed
    prior = checkpoint.peek(record.dir) if resume and same_run else None
    if resume and same_run and prior is None:
        done = record.read_summary()
        if done is not None and done.status == RunStatus.completed:
            log(f"[{old.run_id}] already completed: nothing to do")
            return Start(done=done)
    if prior is None:
        checkpoint.remove(record.dir)
        record.metrics_path.unlink(missing_ok=True)
        record.write_config(yaml.safe_dump(redact_config(to_dict(cfg)), sort_keys=False))  # a record: the run has cfg
        meta = meta or run_meta(cfg, record.dir)
        meta.created = meta.created or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        meta.code_version = meta.code_version or code_version()
        meta.world_size = distributed.world_size()
        record.write_meta(meta)
        return Start(done=None, meta=meta, summary=Summary())
    # the same run continues: meta.json (run id, creation, code version) stays as first written
    record.rewrite_metrics([r for r in record.metrics() if r.get("step", 0) <= prior.step])
    summary = Summary.from_json(prior.summary) or Summary()
    summary.status, summary.error = RunStatus.running, None
    summary.attempt += 1
    summary.resumed_from_step = prior.step
    return Start(done=None, prior=prior, meta=old, summary=summary)


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
