"""A whole run: warm start, GRPO steps, periodic eval, and its run record.

``run_training`` is the job a launcher executes (locally or as a SLURM task). It never lets an
exception escape without first writing ``summary.json`` with the status, step and cause.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import yaml

from trainer import checkpoint, distributed
from trainer.config import Config, ConfigError, config_hash, to_dict, validate
from trainer.engine import build_engine
from trainer.grpo import GRPOTrainer, NonFiniteLoss
from trainer.modeling import load_policy, load_tokenizer
from trainer.provenance import code_version
from trainer.rollout import build_rollout
from trainer.rollout.sharded import ShardedRollout
from trainer.run_record import RunRecord, atomic_write_text
from trainer.sft import warm_start_dir
from trainer.tracking import NullTracker, make_tracker, replay
from trainer.tasks import build_task


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class PromptStream:
    """Epoch-wise shuffled prompts; position is a pure function of the step (resumable)."""

    def __init__(self, examples, per_step: int, seed: int):
        self.examples, self.per_step, self.seed = examples, per_step, seed

    @functools.lru_cache(maxsize=2)
    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def at(self, step: int):
        start = (step - 1) * self.per_step
        return [
            self.examples[self._order(epoch)[i]]
            for epoch, i in (divmod(pos, len(self.examples)) for pos in range(start, start + self.per_step))
        ]


def _rollout_kwargs(cfg: Config, init_dir) -> dict:
    """vLLM starts from the policy's checkpoint (then follows the trainer's weights)."""
    r = cfg.rollout
    if r.backend.value != "vllm":
        return {}
    return {"model_dir": init_dir, "seed": cfg.seed, "gpu_memory_utilization": r.vllm_gpu_memory_utilization,
            "cpu_kv_cache_gib": r.vllm_cpu_kv_cache_gib}


def _engine_kwargs(cfg: Config) -> dict:
    if cfg.engine.backend.value == "deepspeed":
        return {"micro_batch_per_gpu": cfg.batching.micro_batch_size}
    return {}


def _evaluate(trainer: GRPOTrainer, eval_set, seed: int) -> dict[str, float]:
    """Eval with its own RNG stream, restoring the global one so training draws are unaffected."""
    with torch.random.fork_rng():
        torch.manual_seed(seed + 7919)
        return trainer.evaluate(eval_set)


def _truncate_metrics(record: RunRecord, last_step: int) -> None:
    """Drop metric rows after the checkpoint's step: the resumed run writes them again."""
    rows = [r for r in record.metrics() if r.get("step", 0) <= last_step]
    atomic_write_text(record.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _process_age_s() -> Optional[float]:
    """Seconds since this process started (Linux /proc), for the job-overhead figures."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
        return time.time() - (btime + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def run_training(
    cfg: Config,
    run_dir: str | Path,
    meta: dict | None = None,
    log: Callable = print,
    should_stop: Optional[Callable[[], bool]] = None,
    resume: bool = True,
    reporter: Optional[Callable[[int, float], bool]] = None,
) -> dict:
    """Train one run and keep its record in ``run_dir``; return the final summary.

    With ``resume`` (the default) a run dir holding a checkpoint of the same config and seed
    continues from it (same run record, same run id), and one whose summary already says
    ``completed`` is returned as is. Otherwise the run starts from scratch and any previous
    record in ``run_dir`` is replaced. ``should_stop`` is polled after every step: when it returns
    True the run checkpoints and returns with status ``preempted`` (a launcher requeues it).
    """
    t_start = time.time()
    validate(cfg)
    main = start_ranks(cfg) == 0
    if not main:  # rank 0 logs and writes the record; the others only train
        log = _quiet
    record = RunRecord(run_dir, writable=main)
    chash = config_hash(cfg)
    # Rank 0 decides start / resume / nothing to do, and writes; the others follow its decision.
    plan = _start_or_resume(cfg, record, chash, resume, meta, log) if main else None
    plan = distributed.broadcast_object(plan)
    if plan.done is not None:
        return plan.done
    prior, meta, summary = plan.prior, plan.meta, plan.summary
    first_step = prior.step + 1 if prior is not None else 1
    name = meta["run_id"]
    record.write_summary(summary)
    wall_before = float(summary.get("wall_time_s") or 0.0)
    age = _process_age_s()
    timing: dict = {"process_start_to_run_s": age - (time.time() - t_start) if age is not None else None}
    step = first_step - 1
    engine = trainer = None
    tracker = NullTracker()

    def save_checkpoint(at: int) -> None:
        summary["wall_time_s"] = wall_before + time.time() - t_start
        checkpoint.save(run_dir, engine, checkpoint.TrainingState(
            step=at, config_hash=chash, seed=cfg.seed, summary=dict(summary),
            buffer=trainer.buffer.state_dict() if trainer.buffer is not None else None,
        ), rank=engine.rank)

    try:
        if main:
            tracker = make_tracker(to_dict(cfg), run_dir, meta)
            replay(run_dir, tracker)  # a resumed run: what the record holds and the tracker never got
        torch.set_num_threads(cfg.engine.threads or cfg.launcher.threads_per_job)
        device = resolve_device(cfg.engine.device)
        task = build_task(cfg.task)
        t_load = time.time()
        init_dir = _warm_start_rank0_first(cfg, task, log, main)
        policy = load_policy(init_dir).to(device)
        tok = load_tokenizer(init_dir)
        ref = None
        if cfg.algorithm.kl.coef > 0:
            ref = load_policy(init_dir).to(device).eval().requires_grad_(False)
        timing["model_load_s"] = time.time() - t_load
        engine = build_engine(cfg.engine.backend.value, policy, cfg.optim, cfg.engine, **_engine_kwargs(cfg))
        policy = engine.module  # forwards go through the engine's wrapper (ZeRO-3 gathers parameters there)
        rollout = build_rollout(cfg.rollout.backend.value, policy, tok, engine.device, **_rollout_kwargs(cfg, init_dir))
        if cfg.rollout.shard_over_ranks and engine.world_size > 1:
            rollout = ShardedRollout(rollout, engine.rank, engine.world_size, engine.device)
        trainer = GRPOTrainer(cfg, policy, ref, tok, engine, rollout, task)
        eval_set = task.eval[: cfg.train.eval_prompts] if cfg.train.eval_prompts else task.eval
        stream = PromptStream(task.train, cfg.rollout.prompts_per_step, cfg.seed)

        t_eval = time.time()
        if prior is None:
            warm = _evaluate(trainer, eval_set, cfg.seed)
            warm_acc = warm["eval/accuracy"]
            record.append_metrics({"step": 0, **warm})
            tracker.log(warm, 0)
            summary.update(warmstart_eval_accuracy=warm_acc, best_eval_accuracy=warm_acc, final_eval_accuracy=warm_acc)
            log(f"[{name}] warm start eval accuracy {warm_acc:.3f}")
        else:
            t_ckpt = time.time()
            checkpoint.load(run_dir, engine)
            if trainer.buffer is not None:
                trainer.buffer.load_state_dict(prior.buffer)
            rollout.sync_weights(policy)
            timing["checkpoint_load_s"] = time.time() - t_ckpt
            log(f"[{name}] resumed from the checkpoint at step {prior.step} (attempt {summary['attempt']})")
        timing["warm_eval_s"] = time.time() - t_eval if prior is None else 0.0
        timing["run_to_first_step_s"] = time.time() - t_start
        summary["timing"] = timing
        every = cfg.train.checkpoint_every
        for step in range(first_step, cfg.train.steps + 1):
            m = trainer.step(stream.at(step), step)
            if step % cfg.train.eval_every == 0 or step == cfg.train.steps:
                m.update(_evaluate(trainer, eval_set, cfg.seed))
                acc = m["eval/accuracy"]
                summary["final_eval_accuracy"] = acc
                summary["best_eval_accuracy"] = max(summary["best_eval_accuracy"], acc)
                log(
                    f"[{name}] step {step}/{cfg.train.steps} reward {m['train/reward']:.3f} "
                    f"eval {acc:.3f} ({m['time/step_s']:.2f}s/step)"
                )
            record.append_metrics({"step": step, **m})
            tracker.log(m, step)
            summary.update(
                steps_completed=step,
                final_reward=m["train/reward"],
                final_response_length=m["train/response_length"],
            )
            record.write_summary(summary)  # progress survives a crash; status says how far it got
            if reporter is not None and "eval/accuracy" in m and step < cfg.train.steps \
                    and distributed.any_rank(main and reporter(step, m["eval/accuracy"])):
                summary.update(status="pruned", error={"step": step, "cause": "pruned by the tuner"})
                if main:
                    checkpoint.remove(run_dir)
                log(f"[{name}] pruned at step {step}")
                return summary
            if step == cfg.train.steps:
                break
            if should_stop is not None and distributed.any_rank(should_stop()):
                save_checkpoint(step)
                summary.update(status="preempted", error={"step": step, "cause": "stopped by signal; checkpointed"})
                log(f"[{name}] stopping at step {step}: checkpoint written, the run resumes from it")
                return summary
            if every and step % every == 0:
                save_checkpoint(step)
        summary["status"] = "completed"
        if main:
            checkpoint.remove(run_dir)  # the run record is the product; a finished run needs no resume state
    except NonFiniteLoss as e:
        summary.update(status="failed", error={"step": e.step, "cause": e.cause})
        log(f"[{name}] FAILED: {e}")
    except Exception as e:  # noqa: BLE001 - record the failure, then let the launcher see it
        summary.update(status="failed", error={"step": step, "cause": f"{type(e).__name__}: {e}",
                                               "traceback": traceback.format_exc(limit=8)})
        log(f"[{name}] FAILED at step {step}: {type(e).__name__}: {e}")
        if not main:  # rank 0 does not know: leave the cause where `grpolab status` users look
            _write_rank_error(run_dir, summary["error"])
    except BaseException:
        summary.update(status="preempted", error={"step": step, "cause": "interrupted"})
        raise
    finally:
        summary["wall_time_s"] = wall_before + time.time() - t_start
        record.write_summary(summary)
        tracker.finish(summary["status"], summary)
    return summary


def _quiet(*_args, **_kwargs) -> None:
    pass


def _write_rank_error(run_dir, error: dict) -> None:
    from trainer.run_record import atomic_write_json

    rank = distributed.rank()
    atomic_write_json(Path(run_dir) / f"error.rank{rank}.json", {"rank": rank, **error})
    print(f"[grpolab rank {rank}] FAILED: {error.get('cause')}", file=sys.stderr, flush=True)


def _warm_start_rank0_first(cfg: Config, task, log, main: bool):
    """Rank 0 builds (or finds) the warm-start checkpoint; the others wait, then find it cached."""
    if main:
        init_dir = warm_start_dir(cfg, task, log=log)
    distributed.barrier()
    if not main:
        init_dir = warm_start_dir(cfg, task, log=log)
    return init_dir


def start_ranks(cfg: Config) -> int:
    """This process's rank; starts the process group when a launcher (torchrun, srun through
    submitit) set WORLD_SIZE > 1. Several ranks need the DeepSpeed engine."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        if cfg.engine.backend.value != "deepspeed":
            raise ConfigError(
                f"WORLD_SIZE={world} but engine.backend={cfg.engine.backend.value} is single-process: "
                "use engine=deepspeed_zero{0,1,2,3} for several ranks")
        distributed.init_from_env(str(resolve_device(cfg.engine.device)))
    return distributed.rank()


@dataclass
class _Plan:
    """How a run begins: ``done`` (already completed), or a fresh start (``prior`` None) or a resume."""

    done: Optional[dict]
    prior: Optional[checkpoint.TrainingState] = None
    meta: Optional[dict] = None
    summary: Optional[dict] = None


def _start_or_resume(cfg: Config, record: RunRecord, chash: str, resume: bool, meta: Optional[dict], log) -> _Plan:
    run_dir = record.dir
    old_meta = _read_json_or_none(run_dir / "meta.json")
    same_run = bool(old_meta) and old_meta.get("config_hash") == chash and old_meta.get("seed") == cfg.seed
    prior = checkpoint.peek(run_dir) if resume and same_run else None
    if resume and same_run and prior is None:
        done = record.read_summary()
        if done and done.get("status") == "completed":
            log(f"[{old_meta.get('run_id')}] already completed: nothing to do")
            return _Plan(done=done)
    if prior is None:  # a fresh start: nothing of an earlier attempt may leak into this record
        checkpoint.remove(run_dir)
        record.metrics_path.unlink(missing_ok=True)
        record.write_config(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        meta = {
            "run_id": Path(run_dir).name,
            "sweep_id": None,
            "cell_id": chash,
            "config_hash": chash,
            "seed": cfg.seed,
            "swept": {},
            "variant": cfg.algorithm.name,
            "code_version": code_version(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "world_size": distributed.world_size(),
            **(meta or {}),
        }
        record.write_meta(meta)
        summary: dict = {"status": "running", "steps_completed": 0, "error": None, "attempt": 1}
        return _Plan(done=None, prior=None, meta=meta, summary=summary)
    # the same run continues: meta.json (run id, creation, code version) stays as first written
    _truncate_metrics(record, prior.step)
    summary = {**prior.summary, "status": "running", "error": None,
               "attempt": int(prior.summary.get("attempt", 1)) + 1, "resumed_from_step": prior.step}
    return _Plan(done=None, prior=prior, meta=old_meta, summary=summary)


def _read_json_or_none(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
