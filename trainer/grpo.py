"""One GRPO step: rollout → reward → advantage → mini/micro-batched clipped update.

The loop only calls registered pure functions (objectives, advantages, batching) chosen by the
config; which paper a variant came from is invisible here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from trainer.advantages import group_advantages
from trainer.batching import minibatch_indices
from trainer.config import Config, KLPlacement
from trainer.logprobs import completion_logprobs
from trainer.objectives import Normalizer, kl_estimate, policy_loss
from trainer.rollout import RolloutBatch, SamplingParams
from trainer.tasks import Example, Task


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, cause: str):
        super().__init__(f"non-finite loss at step {step}: {cause}")
        self.step = step
        self.cause = cause


@dataclass
class ScoredBatch:
    rollout: RolloutBatch
    rewards: torch.Tensor  # [B] task reward (what accuracy is computed from)
    advantages: torch.Tensor  # [B]
    old_logp: torch.Tensor  # [B,T] π_old of sampled tokens (tempered), no grad
    ref_logp: torch.Tensor | None  # [B,T] π_ref, only when the KL is on
    loss_mask: torch.Tensor  # [B,T] completion mask, minus truncated rows if masked


class GRPOTrainer:
    def __init__(self, cfg: Config, policy, ref_policy, tokenizer, engine, rollout, task: Task):
        self.cfg = cfg
        self.policy = policy
        self.ref = ref_policy
        self.tok = tokenizer
        self.engine = engine
        self.rollout = rollout
        self.task = task
        r = cfg.rollout
        self.sampling = SamplingParams(r.n, r.max_new_tokens, r.temperature, r.top_p, r.top_k)

    # ------------------------------------------------------------ phases
    def collect(self, examples: list[Example]) -> ScoredBatch:
        cfg = self.cfg
        batch = self.rollout.generate([e.prompt for e in examples], self.sampling)
        rewards = torch.tensor(
            [self.task.reward(text, examples[g]) for text, g in zip(batch.completions, batch.group_ids.tolist())]
        )
        with torch.no_grad():
            old_logp = self._logp(self.policy, batch).logp
            ref_logp = self._logp(self.ref, batch).logp if self.ref is not None else None
        mask = batch.completion_mask.float()
        if cfg.algorithm.mask_truncated:
            mask = mask * (~batch.truncated).float().unsqueeze(-1)
        shaped = rewards
        kl = cfg.algorithm.kl
        if ref_logp is not None and kl.placement == KLPlacement.reward:
            shaped = rewards - kl.coef * (kl_estimate(old_logp, ref_logp, kl.estimator) * mask).sum(-1)
        adv_cfg = cfg.algorithm.advantage
        advantages = group_advantages(
            shaped, batch.group_ids, adv_cfg.std_normalize, adv_cfg.eps,
            unbiased=adv_cfg.std_unbiased, scale=adv_cfg.scale.value,
        )
        return ScoredBatch(batch, rewards, advantages, old_logp, ref_logp, mask)

    def update(self, sb: ScoredBatch, step: int, generator: torch.Generator) -> dict[str, float]:
        """μ epochs over mini-batches; each mini-batch is one optimizer step, accumulated over
        micro-batches with the mini-batch's normalizer (so accumulation never changes the math)."""
        cfg = self.cfg
        sums: dict[str, float] = {}
        tokens_seen = 0.0
        grad_norms, losses = [], []
        self.policy.train()
        for _ in range(cfg.algorithm.ppo_epochs):
            for mb in minibatch_indices(
                sb.rollout.group_ids, sb.advantages, cfg.batching.mode.value, cfg.batching.mini_batch_size, generator
            ):
                norm = Normalizer.of(sb.loss_mask[mb], self._max_len())
                mb_loss = 0.0
                for micro in mb.split(cfg.batching.micro_batch_size):
                    loss, stats = self.micro_loss(sb, micro, norm)
                    if not torch.isfinite(loss):
                        raise NonFiniteLoss(step, f"policy loss = {float(loss.detach())} ({_first_nonfinite(stats)})")
                    self.engine.backward(loss)
                    mb_loss += float(loss.detach())
                    n_tok = float(sb.loss_mask[micro].sum())
                    tokens_seen += n_tok
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + float(v) * n_tok
                grad_norm = self.engine.step()
                if not torch.isfinite(torch.tensor(grad_norm)):
                    raise NonFiniteLoss(step, f"gradient norm = {grad_norm}")
                grad_norms.append(grad_norm)
                losses.append(mb_loss)
        out = {k: v / max(tokens_seen, 1.0) for k, v in sums.items()}
        out["loss"] = sum(losses) / len(losses)
        out["grad_norm"] = sum(grad_norms) / len(grad_norms)
        out["optimizer_steps"] = float(len(grad_norms))
        return out

    def micro_loss(self, sb: ScoredBatch, idx: torch.Tensor, norm: Normalizer):
        b = sb.rollout
        stats = completion_logprobs(
            self.policy, b.input_ids[idx], b.attention_mask[idx], b.prompt_len,
            self.cfg.rollout.temperature, with_entropy=True,
        )
        ref = sb.ref_logp[idx] if sb.ref_logp is not None else None
        return policy_loss(
            stats.logp, sb.old_logp[idx], sb.advantages[idx], sb.loss_mask[idx], self.cfg.algorithm,
            ref_logp=ref, entropy=stats.entropy, normalizer=norm,
        )

    def step(self, examples: list[Example], step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        torch.manual_seed(_mix(self.cfg.seed, step, 1))  # sampling RNG: a function of (seed, step) only
        sb = self.collect(examples)
        t1 = time.perf_counter()
        gen = torch.Generator().manual_seed(_mix(self.cfg.seed, step, 2))
        upd = self.update(sb, step, gen)
        t2 = time.perf_counter()
        self.rollout.sync_weights(self.policy)
        lengths = sb.rollout.completion_lengths().float()
        n_tokens = float(sb.rollout.completion_mask.sum())
        metrics = {f"train/{k}": v for k, v in upd.items()}
        metrics.update({
            "train/reward": float(sb.rewards.mean()),
            "train/accuracy": float((sb.rewards >= 1.0).float().mean()),
            "train/response_length": float(lengths.mean()),
            "train/truncated_frac": float(sb.rollout.truncated.float().mean()),
            "train/mixed_group_frac": mixed_group_fraction(sb.rewards, sb.rollout.group_ids),
            "train/adv_abs_mean": float(sb.advantages.abs().mean()),
            "time/rollout_s": t1 - t0,
            "time/update_s": t2 - t1,
            "time/step_s": t2 - t0,
            "perf/rollout_tokens_per_s": n_tokens / max(t1 - t0, 1e-9),
            "perf/update_tokens_per_s": n_tokens * self.cfg.algorithm.ppo_epochs / max(t2 - t1, 1e-9),
        })
        return metrics

    # ------------------------------------------------------------ eval
    @torch.no_grad()
    def evaluate(self, examples: list[Example]) -> dict[str, float]:
        """pass@1 (mean correctness over eval_n samples per prompt) and unbiased pass@k, k = eval_n."""
        r = self.cfg.rollout
        temperature = r.temperature if r.eval_temperature is None else r.eval_temperature
        greedy = temperature == 0
        params = SamplingParams(r.eval_n, r.max_new_tokens, temperature=temperature or 1.0,
                                top_p=r.top_p, top_k=r.top_k, greedy=greedy)
        batch = self.rollout.generate([e.prompt for e in examples], params)
        correct = torch.tensor([
            self.task.reward(t, examples[g]) >= 1.0 for t, g in zip(batch.completions, batch.group_ids.tolist())
        ]).view(len(examples), r.eval_n)
        c = correct.sum(-1).tolist()
        return {
            "eval/accuracy": float(correct.float().mean()),
            f"eval/pass@{r.eval_n}": sum(pass_at_k(r.eval_n, ci, r.eval_n) for ci in c) / len(c),
        }

    # ------------------------------------------------------------ helpers
    def _logp(self, model, batch: RolloutBatch):
        model.eval()
        return completion_logprobs(
            model, batch.input_ids, batch.attention_mask, batch.prompt_len, self.cfg.rollout.temperature
        )

    def _max_len(self) -> int:
        return self.cfg.algorithm.loss_agg_max_len or self.cfg.rollout.max_new_tokens


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 − C(n−c,k)/C(n,k)."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mixed_group_fraction(rewards: torch.Tensor, group_ids: torch.Tensor) -> float:
    """Fraction of prompts whose responses got different rewards (the only ones GRPO learns from)."""
    groups = torch.unique(group_ids)
    mixed = sum(int(rewards[group_ids == g].unique().numel() > 1) for g in groups)
    return mixed / max(len(groups), 1)


def _first_nonfinite(stats: dict) -> str:
    bad = [k for k, v in stats.items() if not torch.isfinite(torch.as_tensor(v))]
    return "non-finite: " + ", ".join(bad) if bad else "stats finite"


def _mix(*xs: int) -> int:
    """A deterministic 63-bit seed from integers (independent streams per purpose and step)."""
    h = 1469598103934665603
    for x in xs:
        h = ((h ^ (x & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h
