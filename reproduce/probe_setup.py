"""The subject of a single-update probe: a run's trainer (policy, rollout, task, loss) built from a
composed config, and one freshly sampled, scored batch of it, exactly as step 1 of that run would
see it (same prompts, same sampling seed). Torch engine, one process: a probe never updates through
the optimizer, only through ``reproduce.probes.sgd_update``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.config import Config
from trainer.engine import build_engine
from trainer.grpo import GRPOTrainer
from trainer.modeling import load_policy, load_tokenizer
from trainer.rollout import build_rollout
from trainer.run import PromptStream, resolve_device
from trainer.scored_batch import ScoredBatch
from trainer.seeds import sampling_seed
from trainer.sft import warm_start_dir
from trainer.tasks import build_task


@dataclass
class Subject:
    cfg: Config
    trainer: GRPOTrainer

    @property
    def policy(self):
        return self.trainer.policy


def build_subject(cfg: Config, log=print) -> Subject:
    """The warm-start policy of ``cfg`` inside a ``GRPOTrainer`` (no reference model: probes
    measure the policy-gradient term alone, so the config's KL is switched off by the caller)."""
    torch.set_num_threads(cfg.engine.threads or cfg.launcher.threads_per_job)
    device = resolve_device(cfg.engine.device)
    task = build_task(cfg.task)
    init_dir = warm_start_dir(cfg, task, log)
    policy = load_policy(init_dir).to(device)
    tok = load_tokenizer(init_dir)
    engine = build_engine("torch", policy, cfg.optim)
    rollout = build_rollout("hf", engine.module, tok, engine.device)
    return Subject(cfg, GRPOTrainer(cfg, engine.module, None, tok, engine, rollout, task))


def sample_batch(subject: Subject, seed: int) -> ScoredBatch:
    """Step 1 of a run with this seed: its prompts, its sampling RNG, the trainer's advantages
    (every token transform of the config applied). Raises when a batch filter kept nothing."""
    cfg = subject.cfg
    stream = PromptStream(subject.trainer.task.train, cfg.rollout.prompts_per_step, seed)
    torch.manual_seed(sampling_seed(seed, 1))
    scored = subject.trainer.collect(stream.at(1), 1).scored
    if scored is None:
        raise RuntimeError(f"probe batch of seed {seed}: the batch filters kept no response")
    return scored
