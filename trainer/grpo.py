"""One GRPO step: sample → score → filter → π_old → advantages → token transforms → (buffer) →
staged, mini/micro-batched clipped update → diagnostics.

Every variant enters through the registry (``trainer.registry``): the batch filters, token
transforms, update buffer, stage plan, surrogate and loss that the config switches on. This module
never tests which one is on, nor which paper it came from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch

from trainer import distributed, registry, update_plan
from trainer.advantages import group_advantages
from trainer.batch_stats import group_chunks, pass_at_k, rollout_stats
from trainer.batching import minibatch_indices
from trainer.config import Config, KLPlacement, OldLogpSource
from trainer.diagnostics import lld_stats, prob_bin_stats, token_flip_stats
from trainer.logprobs import completion_logprobs
from trainer.objectives import Normalizer, kl_estimate, policy_loss
from trainer.registry import OldForwardChunk, TokenContext
from trainer.rollout import RolloutBatch, SamplingParams
from trainer.scored_batch import ScoredBatch
from trainer.seeds import mix, sampling_seed
from trainer.tasks import Example, Task
from trainer.tasks.base import correct_threshold
from trainer.update_plan import Stage

__all__ = ["Collected", "GRPOTrainer", "NonFiniteLoss", "ScoredBatch"]


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, cause: str):
        super().__init__(f"non-finite loss at step {step}: {cause}")
        self.step = step
        self.cause = cause


class Collected(NamedTuple):
    """A freshly sampled and scored batch (None when a filter dropped every response), its
    ``train/*`` statistics, and how many completion tokens the sampler produced."""

    scored: Optional[ScoredBatch]
    stats: dict
    sampled_tokens: float


@dataclass
class OldPolicy:
    logp: torch.Tensor  # [B,T]
    observed: dict = field(default_factory=dict)  # token transform name -> what it collected in the forward


@dataclass
class _Totals:
    """Token-weighted sums over an update's micro-batches, reduced over ranks at the end."""

    sums: dict = field(default_factory=dict)
    tokens: float = 0.0
    losses: list = field(default_factory=list)
    grad_norms: list = field(default_factory=list)

    def add(self, stats: dict, n_tok: float) -> None:
        self.tokens += n_tok
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n_tok

    def means(self) -> dict[str, float]:
        keys = sorted(self.sums)
        totals = distributed.all_reduce_sum(
            torch.tensor([self.tokens, *self.losses, *(self.sums[k] for k in keys)], dtype=torch.float64))
        tokens, losses = float(totals[0]), totals[1 : 1 + len(self.losses)].tolist()
        out = {k: float(v) / max(tokens, 1.0) for k, v in zip(keys, totals[1 + len(self.losses) :])}
        out["loss"] = sum(losses) / len(losses)
        out["grad_norm"] = sum(self.grad_norms) / len(self.grad_norms)
        out["optimizer_steps"] = float(len(self.grad_norms))
        return out


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
        self.threshold = correct_threshold(cfg.task)
        self.old_from_rollout = cfg.algorithm.old_logp_source == OldLogpSource.rollout
        self.sampling = SamplingParams(r.n, r.max_new_tokens, r.temperature, r.top_p, r.top_k,
                                       logprobs=self.old_from_rollout or registry.needs(cfg).behaviour_logp)
        self.filters = registry.features_on(cfg, registry.BatchFilter)
        self.transforms = registry.token_transforms(cfg)
        buffer = registry.one(cfg, registry.UpdateBuffer)
        self.buffer = buffer.role.build(cfg) if buffer is not None else None

    # ------------------------------------------------------------ resumable state
    def state_dict(self) -> Optional[dict]:
        """What a checkpoint must hold besides the engine: the update buffer's contents, if any."""
        return self.buffer.state_dict() if self.buffer is not None else None

    def load_state_dict(self, state: Optional[dict]) -> None:
        if self.buffer is not None:
            self.buffer.load_state_dict(state)

    # ------------------------------------------------------------ the step
    def step(self, examples: list[Example], step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        torch.manual_seed(sampling_seed(self.cfg.seed, step))  # sampling RNG: a function of (seed, step) only
        fresh, metrics, sampled_tokens = self.collect(examples, step)
        sb, buffer_stats = self.select_update_batch(fresh, step)
        metrics.update(buffer_stats)
        t1 = time.perf_counter()
        metrics["train/updated"] = float(sb is not None)
        if sb is not None:
            gen = torch.Generator().manual_seed(mix(self.cfg.seed, step, 2))
            old_logp = sb.old_logp
            metrics.update({f"train/{k}": v for k, v in self.update(sb, step, gen).items()})
            metrics["train/update_batch_size"] = float(sb.size)
            every = self.cfg.diagnostics.every
            if every and step % every == 0:
                metrics.update(self.diagnose(sb, old_logp))
            self.rollout.sync_weights(self.policy)
        t2 = time.perf_counter()
        metrics.update({
            "time/rollout_s": t1 - t0,
            "time/update_s": t2 - t1,
            "time/step_s": t2 - t0,
            "perf/rollout_tokens_per_s": sampled_tokens / max(t1 - t0, 1e-9),
            "perf/update_tokens_per_s": (
                float(sb.loss_mask.sum()) * self.cfg.algorithm.ppo_epochs / max(t2 - t1, 1e-9)
                if sb is not None else 0.0
            ),
        })
        return metrics

    # ------------------------------------------------------------ collect: the phases before the update
    def collect(self, examples: list[Example], step: int) -> Collected:
        """Sample, score, filter, take π_old, and turn rewards into the per-token advantages the loss uses."""
        batch = self.rollout.generate([e.prompt for e in examples], self.sampling, step=step)
        sampled_tokens = float(batch.completion_mask.sum())
        t_reward = time.perf_counter()
        rewards, reward_stats = self.score(batch, examples)
        stats = rollout_stats(batch, rewards, self.threshold)
        stats.update(batch.sampler_stats)
        stats.update({f"train/{k}": v for k, v in reward_stats.items()})
        stats["time/reward_s"] = time.perf_counter() - t_reward
        batch, rewards = self.filter(batch, rewards, stats)
        if batch is None:
            return Collected(None, stats, sampled_tokens)
        correct = rewards >= self.threshold
        mask = batch.completion_mask.float()
        if self.cfg.algorithm.mask_truncated:
            mask = mask * (~batch.truncated).float().unsqueeze(-1)
        old = self.old_policy(batch, mask, correct)
        ref_logp = self._forward(self.ref, batch) if self.ref is not None else None
        if batch.rollout_logp is not None and not self.old_from_rollout:
            gap = ((batch.rollout_logp - old.logp).abs() * mask).sum() / mask.sum().clamp(min=1)
            stats["train/logp_mismatch"] = float(gap)
        seq_adv = self.advantages(rewards, batch.group_ids, old.logp, ref_logp, mask)
        ctx = TokenContext(old.logp, mask, correct, batch.group_ids, seq_adv, behaviour_logp=batch.rollout_logp)
        adv = self.transform_advantages(seq_adv.unsqueeze(-1).expand_as(old.logp).clone(), ctx, old, stats)
        sampled_at = torch.full((batch.size,), step, dtype=torch.long)
        return Collected(ScoredBatch(batch, rewards, correct, seq_adv, adv, old.logp, ref_logp, mask, sampled_at),
                         stats, sampled_tokens)

    def score(self, batch: RolloutBatch, examples: list[Example]) -> tuple[torch.Tensor, dict]:
        """The task's rewards [B] of one batch: one ``Task.rewards`` call (a task with only ``reward`` is
        scored one completion at a time)."""
        paired = [examples[g] for g in batch.group_ids.tolist()]
        if not hasattr(self.task, "rewards"):
            return torch.tensor([self.task.reward(c, e) for c, e in zip(batch.completions, paired)]), {}
        out = self.task.rewards(batch.completions, paired)
        return torch.tensor(out.values), out.stats

    def filter(self, batch: RolloutBatch, rewards: torch.Tensor, stats: dict):
        """The enabled batch filters, in turn; (None, None) when one keeps nothing."""
        for f in self.filters:
            keep, st = f.role.keep(rewards, batch.group_ids, registry.section_of(self.cfg, f))
            stats.update({f"train/{k}": v for k, v in st.items()})
            if keep.numel() == 0:
                return None, None
            batch, rewards = batch.select(keep), rewards[keep]
        return batch, rewards

    def old_policy(self, batch: RolloutBatch, mask: torch.Tensor, correct: torch.Tensor) -> OldPolicy:
        """π_old of the sampled tokens: the sampler's own log-probs, or a no-grad forward in chunks of
        whole groups, each chunk handed to the token transforms that read the forward's internals."""
        if self.old_from_rollout:  # the sampler's log-probs are π_old: no forward
            if batch.rollout_logp is None:
                raise RuntimeError("algorithm.old_logp_source=rollout: the rollout backend returned no log-probs")
            return OldPolicy(batch.rollout_logp.to(self.engine.device))
        observers = [f for f in self.transforms if f.role.observe is not None]
        self.policy.eval()
        logps, parts = [], {f.name: [] for f in observers}
        with torch.no_grad():
            for idx in group_chunks(batch.group_ids, self.cfg.batching.micro_batch_size):
                st = completion_logprobs(
                    self.policy, batch.input_ids[idx], batch.attention_mask[idx], batch.prompt_len,
                    self.cfg.rollout.temperature, with_hidden=bool(observers),
                )
                logps.append(st.logp)
                chunk = OldForwardChunk(st, batch.completion_ids[idx], mask[idx], correct[idx], batch.group_ids[idx])
                for f in observers:
                    parts[f.name].append(f.role.observe(chunk, registry.section_of(self.cfg, f)))
        observed = {f.name: f.role.combine(parts[f.name]) for f in observers if parts[f.name]}
        return OldPolicy(torch.cat(logps), observed)

    def advantages(self, rewards, group_ids, old_logp, ref_logp, mask) -> torch.Tensor:
        """Group-relative advantages [B] of the rewards (minus the KL, where it is folded into them)."""
        kl, a = self.cfg.algorithm.kl, self.cfg.algorithm.advantage
        shaped = rewards
        if ref_logp is not None and kl.placement == KLPlacement.reward:
            shaped = rewards - kl.coef * (kl_estimate(old_logp, ref_logp, kl.estimator) * mask).sum(-1)
        return group_advantages(shaped, group_ids, a.std_normalize, a.eps, unbiased=a.std_unbiased, scale=a.scale.value)

    def transform_advantages(self, adv: torch.Tensor, ctx: TokenContext, old: OldPolicy, stats: dict) -> torch.Tensor:
        """The enabled token transforms, in order, each rewriting the token advantages [B,T]."""
        for f in self.transforms:
            ctx.observed = old.observed.get(f.name)
            adv, st = f.role.apply(adv, ctx, registry.section_of(self.cfg, f))
            stats.update({f"train/{k}": v for k, v in st.items()})
        return adv

    def select_update_batch(self, sb: Optional[ScoredBatch], step: int) -> tuple[Optional[ScoredBatch], dict]:
        """The enabled update buffer decides what to update on; without one, the fresh batch."""
        if self.buffer is None:
            return sb, {}
        if sb is not None:
            self.buffer.add(step, sb)
        out, stats = self.buffer.pop(step)
        return out, {f"train/{k}": v for k, v in stats.items()}

    # ------------------------------------------------------------ update
    def update(self, sb: ScoredBatch, step: int, generator: torch.Generator) -> dict[str, float]:
        """Each stage: μ epochs over mini-batches; each mini-batch is one optimizer step,
        accumulated over micro-batches with the mini-batch's normalizer (exact accumulation)."""
        totals = _Totals()
        stages = update_plan.stages(self.cfg, sb.old_logp, sb.loss_mask)
        lengths = update_plan.row_lengths(sb.rollout.attention_mask, sb.rollout.prompt_len).cpu()
        for stage in stages:
            if stage.refresh_old_logp:
                sb.old_logp = self._forward(self.policy, sb.rollout)
            self.policy.train()
            for _ in range(self.cfg.algorithm.ppo_epochs):
                for mb in self._minibatches(sb, generator):
                    self._optimizer_step(sb, mb, stage, lengths, step, totals)
        out = totals.means()
        n_tok = float(sb.loss_mask.sum().clamp(min=1))
        for stage in stages:
            if stage.active is not None:
                out[f"stage_{stage.name}_token_frac"] = float((stage.active & sb.loss_mask.bool()).sum()) / n_tok
        return out

    def _optimizer_step(self, sb: ScoredBatch, mb: torch.Tensor, stage: Stage, lengths, step: int, totals: _Totals):
        """One mini-batch: backward over this rank's micro-batches, then one optimizer step."""
        norm = Normalizer.of(stage.denom[mb], self._max_len())
        rows = update_plan.live_rows(self.cfg, mb, stage)
        mb_loss, bad = 0.0, None
        rank, world = self.engine.rank, self.engine.world_size
        micros = update_plan.micro_batches(self.cfg, rows, rank, world, lengths)
        per_micro = update_plan.per_micro(self.cfg)  # the reference codes' mean of per-micro-batch losses
        for micro, real in micros:  # real: 1, or 0 for a rank's padding pass
            weight = real
            if per_micro:
                norm, weight = Normalizer.of(stage.denom[micro], self._max_len()), real / (len(micros) * world)
            loss, stats = self.micro_loss(sb, micro, norm, stage)
            if not torch.isfinite(loss) and bad is None:
                bad = f"policy loss = {float(loss.detach())} ({_first_nonfinite(stats)})"
                if self.engine.world_size == 1:
                    raise NonFiniteLoss(step, bad)
                # several ranks: the others are in this mini-batch's collectives; raise together below
            self.engine.backward(loss * weight)
            mb_loss += float(loss.detach()) * weight
            totals.add(stats, float(sb.loss_mask[micro].sum()) * real)
        grad_norm = self.engine.step()
        self._agree_finite(bad, grad_norm, step)
        totals.grad_norms.append(grad_norm)
        totals.losses.append(mb_loss)

    def _agree_finite(self, bad: Optional[str], grad_norm: float, step: int) -> None:
        """Every rank raises at the same optimizer step when any rank's loss or the gradient is non-finite."""
        if self.engine.world_size > 1 and distributed.any_rank(bad is not None):
            raise NonFiniteLoss(step, bad or "policy loss non-finite on another rank")
        if not torch.isfinite(torch.tensor(grad_norm)):
            raise NonFiniteLoss(step, f"gradient norm = {grad_norm}")

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
            if not stage.mask_all_terms:
                active = None  # the KL and entropy terms stay on every token
        return policy_loss(
            stats.logp, sb.old_logp[idx], adv, sb.loss_mask[idx], self.cfg.algorithm,
            ref_logp=ref, entropy=stats.entropy, normalizer=norm, group_ids=b.group_ids[idx], active=active,
        )

    def diagnose(self, sb: ScoredBatch, old_logp: torch.Tensor) -> dict[str, float]:
        """What the papers measure across one update (docs/algorithms.md §7): one no-grad forward."""
        new_logp = self._forward(self.policy, sb.rollout)
        d = self.cfg.diagnostics
        out = {}
        out.update(lld_stats(old_logp, new_logp, sb.loss_mask, sb.correct, sb.group_ids))
        out.update(token_flip_stats(old_logp, new_logp, sb.loss_mask, sb.advantages))
        out.update(prob_bin_stats(old_logp, new_logp, sb.loss_mask, sb.advantages, list(d.prob_bins)))
        return out

    # ------------------------------------------------------------ eval
    @torch.no_grad()
    def evaluate(self, examples: list[Example]) -> dict[str, float]:
        """pass@1 (mean correctness over eval_n samples per prompt) and unbiased pass@k, k = eval_n."""
        return self.evaluate_prompts(examples)[0]

    @torch.no_grad()
    def evaluate_prompts(self, examples: list[Example]) -> tuple[dict[str, float], dict[str, list]]:
        """``evaluate``'s metrics, and per prompt (in ``examples``' order) the number of correct samples
        out of eval_n (``correct``) and the mean completion length in tokens (``length``)."""
        r = self.cfg.rollout
        temperature = r.temperature if r.eval_temperature is None else r.eval_temperature
        greedy = temperature == 0
        params = SamplingParams(r.eval_n, r.max_new_tokens, temperature=temperature or 1.0,
                                top_p=r.top_p, top_k=r.top_k, greedy=greedy)
        batch = self.rollout.generate([e.prompt for e in examples], params)
        rewards, _ = self.score(batch, examples)
        correct = (rewards >= self.threshold).view(len(examples), r.eval_n)
        c = correct.sum(-1).tolist()
        lengths = batch.completion_mask.sum(-1).double().view(len(examples), r.eval_n).mean(-1).tolist()
        return {
            "eval/accuracy": float(correct.float().mean()),
            f"eval/pass@{r.eval_n}": sum(pass_at_k(r.eval_n, ci, r.eval_n) for ci in c) / len(c),
        }, {"correct": [int(x) for x in c], "length": lengths}

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

    def _minibatches(self, sb: ScoredBatch, generator: torch.Generator) -> list[torch.Tensor]:
        b = self.cfg.batching
        return minibatch_indices(
            sb.group_ids, sb.seq_advantages, b.mode, b.mini_batch_size, generator,
            lengths=sb.rollout.attention_mask.sum(-1), partitions=b.seqlen_partitions,
        )

    def _max_len(self) -> int:
        return self.cfg.algorithm.loss_agg_max_len or self.cfg.rollout.max_new_tokens


def _first_nonfinite(stats: dict) -> str:
    bad = [k for k, v in stats.items() if not torch.isfinite(torch.as_tensor(v))]
    return "non-finite: " + ", ".join(bad) if bad else "stats finite"


