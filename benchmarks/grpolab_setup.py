"""grpolab trainers as the benchmarks build them: the config at a benchmark's sizes, and a trainer
assembled from a warm start as ``trainer.run.run_training`` assembles one in a single process on
the torch engine (no DeepSpeed or vLLM options, no tracker, no run record, no eval)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from sweeps.compose import compose
from trainer.config import Config
from trainer.engine import build_engine
from trainer.grpo import GRPOTrainer
from trainer.modeling import load_policy, load_tokenizer
from trainer.rollout import build_rollout
from trainer.run import resolve_device


def grpolab_config(prompts: int, max_new_tokens: int, mu: int, minibatches: int, micro: Optional[int],
                   extra: tuple[str, ...] = ()) -> Config:
    """The default config with the benchmark's sizes: ``minibatches`` optimizer steps per pass over
    the rollout batch, micro-batches of ``micro`` (default: the config's), diagnostics off (TRL has none),
    then ``extra`` overrides (e.g. ``algorithm.old_logp_source=rollout``)."""
    base = compose([])
    batch = prompts * base.rollout.n
    if batch % minibatches:
        raise SystemExit(f"--prompts={prompts}: {batch} responses do not split into {minibatches} mini-batches")
    mini = batch // minibatches
    micro = micro or min(base.batching.micro_batch_size, mini)
    if mini % micro:
        raise SystemExit(f"--micro={micro}: must divide the mini-batch ({mini} responses)")
    return compose([
        f"rollout.prompts_per_step={prompts}",
        f"rollout.max_new_tokens={max_new_tokens}",
        f"algorithm.ppo_epochs={mu}",
        f"batching.mini_batch_size={mini}",
        f"batching.micro_batch_size={micro}",
        "diagnostics.every=0",
        *extra,
    ])


def build_trainer(cfg: Config, init_dir: Path, task) -> GRPOTrainer:
    """Policy and tokenizer from ``init_dir``, a frozen reference policy when ``algorithm.kl.coef``
    > 0, the configured engine and rollout backend: the trainer of ``run_training``."""
    device = resolve_device(cfg.engine.device)
    policy = load_policy(init_dir).to(device)
    tok = load_tokenizer(init_dir)
    ref = load_policy(init_dir).to(device).eval().requires_grad_(False) if cfg.algorithm.kl.coef > 0 else None
    engine = build_engine(cfg.engine.backend.value, policy, cfg.optim)
    rollout = build_rollout(cfg.rollout.backend.value, policy, tok, device)
    return GRPOTrainer(cfg, policy, ref, tok, engine, rollout, task)
