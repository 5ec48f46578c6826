"""One GRPO step: rollout → reward → advantage → mini/micro-batched clipped update.

The loop only calls registered pure functions (objectives, advantages, batching) chosen by the
config; which paper a variant came from is invisible here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch

from trainer import distributed, update_plan
from trainer.advantages import group_advantages
from trainer.batch_stats import group_chunks, mixed_rows, pass_at_k, rollout_stats
from trainer.batching import minibatch_indices
from trainer.config import Config, KLPlacement, OldLogpSource
from trainer.diagnostics import lld_stats, prob_bin_stats, token_flip_stats
from trainer.logprobs import completion_logprobs
from trainer.nthr_scores import NTHRScores
from trainer.objectives import Normalizer, kl_estimate, policy_loss
from trainer.reward_balanced import RewardBalancedBuffer
from trainer.rollout import RolloutBatch, SamplingParams
from trainer.scored_batch import ScoredBatch
from trainer.tasks import Example, Task
from trainer.token_weights import advantage_reweight
from trainer.update_plan import Stage


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, cause: str):
        super().__init__(f"non-finite loss at step {step}: {cause}")
        self.step = step
        self.cause = cause


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
        self.old_from_rollout = cfg.algorithm.old_logp_source == OldLogpSource.rollout
        self.sampling = SamplingParams(r.n, r.max_new_tokens, r.temperature, r.top_p, r.top_k,
                                       logprobs=self.old_from_rollout)
        rb = cfg.batching.reward_balanced
        self.buffer = (
            RewardBalancedBuffer(rb, update_size=r.prompts_per_step * r.n, correct_threshold=self._threshold())
            if rb.enabled else None
        )

    # ------------------------------------------------------------ resumable state
    def state_dict(self) -> Optional[dict]:
        """What a checkpoint must hold besides the engine: the update buffer's contents, if any."""
        return self.buffer.state_dict() if self.buffer is not None else None

    def load_state_dict(self, state: Optional[dict]) -> None:
        if self.buffer is not None:
            self.buffer.load_state_dict(state)

    # ------------------------------------------------------------ phases
    def collect(self, examples: list[Example], step: int) -> tuple[Optional[ScoredBatch], dict[str, float]]:
        """Sample, score, and turn rewards into the per-token advantages the loss will use."""
        alg = self.cfg.algorithm
        batch = self.rollout.generate([e.prompt for e in examples], self.sampling)
        rewards = torch.tensor(
            [self.task.reward(text, examples[g]) for text, g in zip(batch.completions, batch.group_ids.tolist())]
        )
        stats = rollout_stats(batch, rewards, self._threshold())
        if alg.dynamic_sampling:
            keep = torch.nonzero(mixed_rows(rewards, batch.group_ids)).flatten()
            stats["train/dynamic_sampling_kept_frac"] = keep.numel() / max(batch.size, 1)
            if keep.numel() == 0:
                return None, stats
            batch, rewards = batch.select(keep), rewards[keep]
        correct = rewards >= self._threshold()
        mask = batch.completion_mask.float()
        if alg.mask_truncated:
            mask = mask * (~batch.truncated).float().unsqueeze(-1)
        if self.old_from_rollout:  # the sampler's log-probs are π_old: no forward
            if batch.rollout_logp is None:
                raise RuntimeError("algorithm.old_logp_source=rollout: the rollout backend returned no log-probs")
            old = OldPolicy(batch.rollout_logp.to(self.engine.device), None)
        else:
            old = self._old_forward(batch, mask, correct)
        ref_logp = self._forward(self.ref, batch) if self.ref is not None else None
        if batch.rollout_logp is not None and not self.old_from_rollout:
            stats["train/logp_mismatch"] = float(((batch.rollout_logp - old.logp).abs() * mask).sum() / mask.sum().clamp(min=1))
        shaped = rewards
        kl = alg.kl
        if ref_logp is not None and kl.placement == KLPlacement.reward:
            shaped = rewards - kl.coef * (kl_estimate(old.logp, ref_logp, kl.estimator) * mask).sum(-1)
        a = alg.advantage
        seq_adv = group_advantages(shaped, batch.group_ids, a.std_normalize, a.eps, unbiased=a.std_unbiased, scale=a.scale.value)
        adv = seq_adv.unsqueeze(-1).expand_as(old.logp).clone()
        if old.nthr is not None:
            adv, nthr_stats = old.nthr.apply(adv)
            stats.update({f"train/{k}": v for k, v in nthr_stats.items()})
        if alg.adv_reweight.alpha > 0:
            adv = advantage_reweight(adv, old.logp, alg.adv_reweight.alpha)
        sampled_at = torch.full((batch.size,), step, dtype=torch.long)
        return ScoredBatch(batch, rewards, correct, seq_adv, adv, old.logp, ref_logp, mask, sampled_at), stats

    def select_update_batch(self, sb: Optional[ScoredBatch], step: int) -> tuple[Optional[ScoredBatch], dict[str, float]]:
        """Reward-balanced buffering when on; otherwise the fresh batch is the update batch."""
        if self.buffer is None:
            return sb, {}
        if sb is not None:
            self.buffer.add(step, sb, sb.group_ids, sb.rewards, sb.seq_advantages)
        out, stats = self.buffer.pop_update(step)
        return out, {f"train/rb/{k}": float(v) for k, v in stats.items()}

    def update(self, sb: ScoredBatch, step: int, generator: torch.Generator) -> dict[str, float]:
        """Each stage: μ epochs over mini-batches; each mini-batch is one optimizer step,
        accumulated over micro-batches with the mini-batch's normalizer (exact accumulation)."""
        cfg = self.cfg
        sums: dict[str, float] = {}
        tokens_seen = 0.0
        grad_norms, losses = [], []
        stages = update_plan.stages(self.cfg, sb.old_logp, sb.loss_mask)
        lengths = update_plan.row_lengths(sb.rollout.attention_mask, sb.rollout.prompt_len).cpu()
        for i, stage in enumerate(stages):
            if i > 0 and cfg.algorithm.lopti.recompute_old_logp:
                sb.old_logp = self._forward(self.policy, sb.rollout)
            self.policy.train()
            for _ in range(cfg.algorithm.ppo_epochs):
                for mb in self._minibatches(sb, generator):
                    norm = Normalizer.of(stage.denom[mb], self._max_len())
                    mb_loss = 0.0
                    rows = update_plan.live_rows(cfg, mb, stage)
                    bad = None
                    for micro, weight in update_plan.micro_batches(cfg, rows, self.engine.rank, self.engine.world_size,
                                                                   lengths):
                        loss, stats = self.micro_loss(sb, micro, norm, stage)
                        if not torch.isfinite(loss) and bad is None:
                            bad = f"policy loss = {float(loss.detach())} ({_first_nonfinite(stats)})"
                            if self.engine.world_size == 1:
                                raise NonFiniteLoss(step, bad)
                            # several ranks: the others are in this mini-batch's collectives; raise together below
                        self.engine.backward(loss * weight)
                        mb_loss += float(loss.detach()) * weight
                        n_tok = float(sb.loss_mask[micro].sum()) * weight
                        tokens_seen += n_tok
                        for k, v in stats.items():
                            sums[k] = sums.get(k, 0.0) + float(v) * n_tok
                    grad_norm = self.engine.step()
                    if self.engine.world_size > 1 and distributed.any_rank(bad is not None):
                        raise NonFiniteLoss(step, bad or "policy loss non-finite on another rank")
                    if not torch.isfinite(torch.tensor(grad_norm)):
                        raise NonFiniteLoss(step, f"gradient norm = {grad_norm}")
                    grad_norms.append(grad_norm)
                    losses.append(mb_loss)
        # every rank saw its shard: sum the token-weighted stats and losses over ranks
        keys = sorted(sums)
        totals = distributed.all_reduce_sum(torch.tensor([tokens_seen, *losses, *(sums[k] for k in keys)], dtype=torch.float64))
        tokens_seen, losses = float(totals[0]), totals[1 : 1 + len(losses)].tolist()
        out = {k: float(v) / max(tokens_seen, 1.0) for k, v in zip(keys, totals[1 + len(losses) :])}
        out["loss"] = sum(losses) / len(losses)
        out["grad_norm"] = sum(grad_norms) / len(grad_norms)
        out["optimizer_steps"] = float(len(grad_norms))
        n_tok = float(sb.loss_mask.sum().clamp(min=1))
        for stage in stages:
            if stage.active is not None:
                out[f"stage_{stage.name}_token_frac"] = float((stage.active & sb.loss_mask.bool()).sum()) / n_tok
        return out

    def micro_loss(self, sb: ScoredBatch, idx: torch.Tensor, norm: Normalizer, stage: Optional[Stage] = None):
        b = sb.rollout
        stats = completion_logprobs(
            self.policy, b.input_ids[idx], b.attention_mask[idx], b.prompt_len,
            self.cfg.rollout.temperature, with_entropy=True,
        )
        ref = sb.ref_logp[idx] if sb.ref_logp is not None else None
        adv = sb.advantages[idx]
        active = None
        if stage is not None and stage.active is not None:
            active = stage.active[idx]
            adv = torch.where(active, adv, torch.zeros_like(adv))
            if not self.cfg.algorithm.lopti.mask_kl:
                active = None  # the KL and entropy terms stay on every token
        return policy_loss(
            stats.logp, sb.old_logp[idx], adv, sb.loss_mask[idx], self.cfg.algorithm,
            ref_logp=ref, entropy=stats.entropy, normalizer=norm, group_ids=b.group_ids[idx], active=active,
        )

    def diagnose(self, sb: ScoredBatch, old_logp: torch.Tensor) -> dict[str, float]:
        """What the papers measure across one update (ALGORITHMS.md §7): one no-grad forward."""
        new_logp = self._forward(self.policy, sb.rollout)
        d = self.cfg.diagnostics
        out = {}
        out.update(lld_stats(old_logp, new_logp, sb.loss_mask, sb.correct, sb.group_ids))
        out.update(token_flip_stats(old_logp, new_logp, sb.loss_mask, sb.advantages))
        out.update(prob_bin_stats(old_logp, new_logp, sb.loss_mask, sb.advantages, list(d.prob_bins)))
        return out

    def step(self, examples: list[Example], step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        torch.manual_seed(_mix(self.cfg.seed, step, 1))  # sampling RNG: a function of (seed, step) only
        fresh, metrics = self.collect(examples, step)
        sb, rb_stats = self.select_update_batch(fresh, step)
        metrics.update(rb_stats)
        t1 = time.perf_counter()
        metrics["train/updated"] = float(sb is not None)
        if sb is not None:
            gen = torch.Generator().manual_seed(_mix(self.cfg.seed, step, 2))
            old_logp = sb.old_logp
            metrics.update({f"train/{k}": v for k, v in self.update(sb, step, gen).items()})
            metrics["train/update_batch_size"] = float(sb.size)
            every = self.cfg.diagnostics.every
            if every and step % every == 0:
                metrics.update(self.diagnose(sb, old_logp))
            self.rollout.sync_weights(self.policy)
        t2 = time.perf_counter()
        n_tokens = metrics.pop("_n_tokens")
        metrics.update({
            "time/rollout_s": t1 - t0,
            "time/update_s": t2 - t1,
            "time/step_s": t2 - t0,
            "perf/rollout_tokens_per_s": n_tokens / max(t1 - t0, 1e-9),
            "perf/update_tokens_per_s": (
                float(sb.loss_mask.sum()) * self.cfg.algorithm.ppo_epochs / max(t2 - t1, 1e-9) if sb is not None else 0.0
            ),
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
    def _forward(self, model, batch: RolloutBatch) -> torch.Tensor:
        """Log-probs [B,T] of the sampled tokens under ``model`` (no grad), in micro-batches."""
        model.eval()
        with torch.no_grad():
            return torch.cat([
                completion_logprobs(
                    model, batch.input_ids[i], batch.attention_mask[i], batch.prompt_len, self.cfg.rollout.temperature
                ).logp
                for i in torch.arange(batch.size).split(self.cfg.batching.micro_batch_size)
            ])

    def _old_forward(self, batch: RolloutBatch, mask: torch.Tensor, correct: torch.Tensor) -> "OldPolicy":
        """π_old in chunks of whole groups; NTHR's scores come from the same forward (no extra pass)."""
        nthr_cfg = self.cfg.algorithm.nthr
        self.policy.eval()
        logps, scores = [], []
        with torch.no_grad():
            for idx in group_chunks(batch.group_ids, self.cfg.batching.micro_batch_size):
                st = completion_logprobs(
                    self.policy, batch.input_ids[idx], batch.attention_mask[idx], batch.prompt_len,
                    self.cfg.rollout.temperature, with_hidden=nthr_cfg.enabled,
                )
                logps.append(st.logp)
                if nthr_cfg.enabled:
                    scores.append(NTHRScores.of(st, batch.completion_ids[idx], mask[idx], correct[idx],
                                                batch.group_ids[idx], nthr_cfg))
        nthr = NTHRScores.concat(scores) if scores else None
        return OldPolicy(torch.cat(logps), nthr)

    def _minibatches(self, sb: ScoredBatch, generator: torch.Generator) -> list[torch.Tensor]:
        b = self.cfg.batching
        return minibatch_indices(
            sb.group_ids, sb.seq_advantages, b.mode.value, b.mini_batch_size, generator,
            lengths=sb.rollout.attention_mask.sum(-1), partitions=b.seqlen_partitions,
        )

    def _threshold(self) -> float:
        t = self.cfg.algorithm.nthr.correct_threshold
        return 1.0 if t is None else t

    def _max_len(self) -> int:
        return self.cfg.algorithm.loss_agg_max_len or self.cfg.rollout.max_new_tokens


@dataclass
class OldPolicy:
    logp: torch.Tensor  # [B,T]
    nthr: Optional[NTHRScores]


def _first_nonfinite(stats: dict) -> str:
    bad = [k for k, v in stats.items() if not torch.isfinite(torch.as_tensor(v))]
    return "non-finite: " + ", ".join(bad) if bad else "stats finite"


def _mix(*xs: int) -> int:
    """A deterministic 63-bit seed from integers (independent streams per purpose and step)."""
    h = 1469598103934665603
    for x in xs:
        h = ((h ^ (x & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h
