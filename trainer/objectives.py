"""Policy losses as a registry of pure functions over tensors (ALGORITHMS.md §1).

A registered loss maps (logp, old_logp, advantages, mask, cfg) to a per-token loss [B,T] plus
clip indicators; ``policy_loss`` adds the KL and entropy terms and aggregates with the
mini-batch's normalizer. A new objective is one function plus one ``algorithm.loss`` value;
the training loop never branches on which paper it came from.

Shapes: B responses, T completion positions; ``mask`` is 1 on response tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from trainer.config import AlgorithmConfig, KLPlacement, LossAgg


class TokenLoss(NamedTuple):
    loss: torch.Tensor  # [B,T] per-token policy-gradient loss
    ratio: torch.Tensor  # [B,T] importance ratio the clip acted on (detached)
    clipped_low: torch.Tensor  # [B,T] bool: clip at 1−ε_low was active (A < 0)
    clipped_high: torch.Tensor  # [B,T] bool: clip at 1+ε_high was active (A > 0)
    dual_clipped: torch.Tensor  # [B,T] bool: dual clip bound the loss (A < 0)


POLICY_LOSSES: dict[str, Callable[..., TokenLoss]] = {}


def register_policy_loss(name: str):
    def wrap(fn):
        POLICY_LOSSES[name] = fn
        return fn

    return wrap


def _clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, cfg: AlgorithmConfig) -> TokenLoss:
    """L = −min(r A, clip(r, 1−ε_low, 1+ε_high) A); with dual clip c, L ≤ c·|A| for A < 0."""
    low, high = 1.0 - cfg.clip.low, 1.0 + cfg.clip.high
    unclipped = -ratio * adv
    clipped = -ratio.clamp(low, high) * adv
    loss = torch.maximum(unclipped, clipped)
    took_clip = clipped > unclipped
    dual = torch.zeros_like(took_clip)
    if cfg.clip.dual is not None:
        bound = -cfg.clip.dual * adv  # = c·|A| where A < 0
        dual = (adv < 0) & (loss > bound)
        loss = torch.where(dual, bound, loss)
    r = ratio.detach()
    return TokenLoss(loss, r, took_clip & (adv < 0), took_clip & (adv > 0), dual)


@register_policy_loss("ppo_clip")
def ppo_clip_loss(logp, old_logp, adv, mask, cfg: AlgorithmConfig) -> TokenLoss:
    """Token-level ratio r_{i,t} = exp(ℓ − ℓ_old): GRPO (Shao et al. 2024), DAPO, Dr.GRPO."""
    return _clipped_surrogate(torch.exp(logp - old_logp), adv, cfg)


def sequence_log_ratio(logp, old_logp, mask) -> torch.Tensor:
    """log s_i = mean_t (ℓ − ℓ_old) over response tokens [B] (GSPO, Zheng et al. 2025 Eq. 7)."""
    lengths = mask.sum(-1).clamp(min=1)
    return ((logp - old_logp) * mask).sum(-1) / lengths


@register_policy_loss("gspo")
def gspo_loss(logp, old_logp, adv, mask, cfg: AlgorithmConfig) -> TokenLoss:
    """Sequence ratio s_i clipped per sequence; written token-wise as sg(s_i)·π/sg(π) so the
    gradient is s_i·∇ℓ_{i,t} per token (GSPO-token form; equals GSPO with seq-mean-token-mean)."""
    log_s = sequence_log_ratio(logp, old_logp, mask).detach()
    ratio = torch.exp(logp - logp.detach() + log_s.unsqueeze(-1))
    return _clipped_surrogate(ratio, adv, cfg)


# ---------------------------------------------------------------- KL and aggregation
def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL(π_θ‖π_ref) estimators (Schulman 2020): k1, k2, k3."""
    diff = logp - ref_logp
    if estimator == "k1":
        return diff
    if estimator == "k2":
        return 0.5 * diff**2
    if estimator == "k3":
        return torch.exp(-diff) + diff - 1.0
    raise ValueError(f"algorithm.kl.estimator={estimator!r}: must be k1, k2 or k3")


@dataclass(frozen=True)
class Normalizer:
    """The denominators of a loss aggregation, taken from the whole mini-batch.

    Passing the mini-batch's normalizer to every micro-batch makes gradient accumulation exact:
    Σ_micro agg(micro) = agg(mini-batch).
    """

    num_tokens: float
    num_seqs: float
    max_len: float

    @classmethod
    def of(cls, mask: torch.Tensor, max_len: int | None = None) -> "Normalizer":
        return cls(
            num_tokens=max(float(mask.sum()), 1.0),
            num_seqs=max(float((mask.sum(-1) > 0).sum()), 1.0),
            max_len=float(max_len if max_len is not None else mask.shape[-1]),
        )


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: str, norm: Normalizer) -> torch.Tensor:
    """Reduce per-token values [B,T] to a scalar (ALGORITHMS.md §1, loss aggregation)."""
    masked = torch.where(mask.bool(), values, torch.zeros_like(values))  # an inf at padding stays out
    if mode == LossAgg.token_mean:  # DAPO; Lopti and cancellation papers
        return masked.sum() / norm.num_tokens
    if mode == LossAgg.seq_mean_token_mean:  # original GRPO
        per_seq = masked.sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / norm.num_seqs
    if mode == LossAgg.seq_mean_token_sum_norm:  # Dr.GRPO: constant length
        return masked.sum() / (norm.num_seqs * norm.max_len)
    if mode == LossAgg.seq_mean_token_sum:
        return masked.sum() / norm.num_seqs
    raise ValueError(f"algorithm.loss_agg={mode!r}: must be one of {[m.value for m in LossAgg]}")


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cfg: AlgorithmConfig,
    ref_logp: torch.Tensor | None = None,
    *,
    entropy: torch.Tensor | None = None,
    normalizer: Normalizer | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss = agg(policy loss + kl.coef·KL − entropy_coef·H) and detached token-mean stats.

    ``advantages`` is [B] (broadcast over tokens) or [B,T] (after token-level reweighting).
    ``normalizer`` defaults to this batch's own; pass the mini-batch's when this is a micro-batch.
    """
    mask = mask.to(logp.dtype)
    adv = advantages.unsqueeze(-1).expand_as(logp) if advantages.dim() == 1 else advantages
    if cfg.loss not in POLICY_LOSSES:
        raise ValueError(f"algorithm.loss={cfg.loss!r}: registered losses are {sorted(POLICY_LOSSES)}")
    tok = POLICY_LOSSES[cfg.loss](logp, old_logp, adv, mask, cfg)
    per_token = tok.loss
    n = mask.sum().clamp(min=1)
    stats = {
        "pg_loss": (tok.loss.detach() * mask).sum() / n,
        "ratio_mean": (tok.ratio * mask).sum() / n,
        "clip_frac_low": (tok.clipped_low * mask).sum() / n,
        "clip_frac_high": (tok.clipped_high * mask).sum() / n,
        "dual_clip_frac": (tok.dual_clipped * mask).sum() / n,
    }
    if ref_logp is not None and cfg.kl.coef > 0 and cfg.kl.placement == KLPlacement.loss:
        kl = kl_estimate(logp, ref_logp, cfg.kl.estimator)
        per_token = per_token + cfg.kl.coef * kl
        stats["kl"] = (kl.detach() * mask).sum() / n
    if entropy is not None:
        if cfg.entropy_coef > 0:
            per_token = per_token - cfg.entropy_coef * entropy
        stats["entropy"] = (entropy.detach() * mask).sum() / n
    norm = normalizer or Normalizer.of(mask, cfg.loss_agg_max_len)
    return aggregate(per_token, mask, cfg.loss_agg, norm), stats
