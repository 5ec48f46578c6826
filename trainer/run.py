"""A whole run: warm start, GRPO steps, periodic eval, and its run record.

``run_training`` is the job a launcher executes (locally or as a SLURM task). It never lets an
exception escape without first writing ``summary.json`` with the status, step and cause.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import time
import traceback
from pathlib import Path
from typing import Callable

import torch
import yaml

from trainer.config import Config, config_hash, to_dict, validate
from trainer.engine import build_engine
from trainer.grpo import GRPOTrainer, NonFiniteLoss
from trainer.modeling import load_policy, load_tokenizer
from trainer.provenance import code_version
from trainer.rollout import build_rollout
from trainer.run_record import RunRecord
from trainer.sft import warm_start_dir
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


def _engine_kwargs(cfg: Config) -> dict:
    if cfg.engine.backend.value == "deepspeed":
        return {"micro_batch_per_gpu": cfg.batching.micro_batch_size}
    return {}


def _evaluate(trainer: GRPOTrainer, eval_set, seed: int) -> dict[str, float]:
    """Eval with its own RNG stream, restoring the global one so training draws are unaffected."""
    with torch.random.fork_rng():
        torch.manual_seed(seed + 7919)
        return trainer.evaluate(eval_set)


def run_training(cfg: Config, run_dir: str | Path, meta: dict | None = None, log: Callable = print) -> dict:
    validate(cfg)
    record = RunRecord(run_dir)
    record.write_config(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    meta = {
        "run_id": Path(run_dir).name,
        "sweep_id": None,
        "cell_id": config_hash(cfg),
        "config_hash": config_hash(cfg),
        "seed": cfg.seed,
        "swept": {},
        "variant": cfg.algorithm.name,
        "code_version": code_version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **(meta or {}),
    }
    record.write_meta(meta)
    name = meta["run_id"]
    summary: dict = {"status": "running", "steps_completed": 0, "error": None}
    record.write_summary(summary)
    t_start = time.time()
    step = 0
    try:
        torch.set_num_threads(cfg.engine.threads or cfg.launcher.threads_per_job)
        device = resolve_device(cfg.engine.device)
        task = build_task(cfg.task)
        init_dir = warm_start_dir(cfg, task, log=log)
        policy = load_policy(init_dir).to(device)
        tok = load_tokenizer(init_dir)
        ref = None
        if cfg.algorithm.kl.coef > 0:
            ref = load_policy(init_dir).to(device).eval().requires_grad_(False)
        engine = build_engine(cfg.engine.backend.value, policy, cfg.optim, cfg.engine, **_engine_kwargs(cfg))
        policy = engine.module  # forwards go through the engine's wrapper (ZeRO-3 gathers parameters there)
        rollout = build_rollout(cfg.rollout.backend.value, policy, tok, engine.device)
        trainer = GRPOTrainer(cfg, policy, ref, tok, engine, rollout, task)
        eval_set = task.eval[: cfg.train.eval_prompts] if cfg.train.eval_prompts else task.eval
        stream = PromptStream(task.train, cfg.rollout.prompts_per_step, cfg.seed)

        warm = _evaluate(trainer, eval_set, cfg.seed)
        warm_acc = warm["eval/accuracy"]
        record.append_metrics({"step": 0, **warm})
        summary.update(warmstart_eval_accuracy=warm_acc, best_eval_accuracy=warm_acc, final_eval_accuracy=warm_acc)
        log(f"[{name}] warm start eval accuracy {warm_acc:.3f}")
        for step in range(1, cfg.train.steps + 1):
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
            summary.update(
                steps_completed=step,
                final_reward=m["train/reward"],
                final_response_length=m["train/response_length"],
            )
            record.write_summary(summary)  # progress survives a crash; status says how far it got
        summary["status"] = "completed"
    except NonFiniteLoss as e:
        summary.update(status="failed", error={"step": e.step, "cause": e.cause})
        log(f"[{name}] FAILED: {e}")
    except Exception as e:  # noqa: BLE001 - record the failure, then let the launcher see it
        summary.update(status="failed", error={"step": step, "cause": f"{type(e).__name__}: {e}",
                                               "traceback": traceback.format_exc(limit=8)})
        log(f"[{name}] FAILED at step {step}: {type(e).__name__}: {e}")
    except BaseException:
        summary.update(status="preempted", error={"step": step, "cause": "interrupted"})
        raise
    finally:
        summary["wall_time_s"] = time.time() - t_start
        record.write_summary(summary)
    return summary
