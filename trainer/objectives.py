"""The policy loss of one (micro-)batch: the registered loss, KL and entropy terms, aggregation.

``policy_loss`` asks the registry for the loss ``algorithm.loss`` names and for the surrogate an
enabled feature puts in place of PPO's clip, adds the KL and entropy terms and aggregates with the
mini-batch's normalizer, so gradient accumulation over micro-batches is exact (docs/algorithms.md
§1.4-§1.7). A new objective is one module under ``trainer/variants/``; nothing here changes.

Shapes: B responses, T completion positions; ``mask`` is 1 on response tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer import registry
from trainer.config import KLPlacement, LossAgg
from trainer.intra_group import asym
from trainer.token_loss import TokenLoss, clipped_surrogate, sequence_advantage


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL(π_θ‖π_ref) estimators (Schulman 2020): k1, k2, k3."""
    diff = logp - ref_logp
    if estimator == "k1":
        return diff
    if estimator == "k2":
        return 0.5 * diff**2
    if estimator == "k3":
        return torch.exp(-diff) + diff - 1.0
    raise ValueError(f"kl estimator {estimator!r}: must be k1, k2 or k3")


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
    """Reduce per-token values [B,T] to a scalar (docs/algorithms.md §1.6)."""
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
    raise ValueError(f"loss aggregation {mode!r}: must be one of {', '.join(m.value for m in LossAgg)}")


def _policy_stats(tok: TokenLoss, adv, mask, group_ids) -> dict[str, torch.Tensor]:
    """Token means of the loss, ratio and clip indicators; the loss's own stats; Asym (DFPO Eq. 23)
    of its trajectory weights when the prompt groups are known."""
    n = mask.sum().clamp(min=1)
    stats = {
        "pg_loss": (tok.loss.detach() * mask).sum() / n,
        "ratio_mean": (tok.ratio * mask).sum() / n,
        "clip_frac_low": (tok.clipped_low * mask).sum() / n,
        "clip_frac_high": (tok.clipped_high * mask).sum() / n,
        "dual_clip_frac": (tok.dual_clipped * mask).sum() / n,
        **(tok.stats or {}),
    }
    if group_ids is not None and tok.seq_weight is not None:
        stats["asym"] = torch.tensor(
            asym(tok.seq_weight, sequence_advantage(adv, mask), group_ids), dtype=torch.float64
        )
    return stats


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cfg,
    ref_logp: torch.Tensor | None = None,
    *,
    entropy: torch.Tensor | None = None,
    normalizer: Normalizer | None = None,
    group_ids: torch.Tensor | None = None,
    active: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss = agg(policy loss + kl.coef·KL − entropy_coef·H) and detached token-mean stats.

    ``cfg`` is the algorithm section. ``advantages`` is [B] (broadcast over tokens) or [B,T] (after
    token transforms). ``normalizer`` defaults to this batch's own; pass the mini-batch's when this
    is a micro-batch. ``group_ids`` [B] is the prompt group of each response: required by a loss
    that needs whole groups (DFPO: its groups must be whole in this call); when given, the stats
    include ``asym``. ``active`` [B,T] (bool) keeps every term only on those tokens while ``mask``
    still defines the denominators (one stage of a ``StagePlan`` that masks all its terms).
    """
    mask = mask.to(logp.dtype)
    adv = advantages.unsqueeze(-1).expand_as(logp) if advantages.dim() == 1 else advantages
    surrogate = registry.one(cfg, registry.Surrogate)
    tok = registry.loss_of(cfg).fn(
        logp,
        old_logp,
        adv,
        mask,
        cfg,
        group_ids=group_ids,
        surrogate=surrogate.role.fn if surrogate is not None else clipped_surrogate,
    )
    per_token = tok.loss
    stats = _policy_stats(tok, adv, mask, group_ids)
    n = mask.sum().clamp(min=1)
    if ref_logp is not None and cfg.kl.coef > 0 and cfg.kl.placement == KLPlacement.loss:
        kl = kl_estimate(logp, ref_logp, cfg.kl.estimator)
        per_token = per_token + cfg.kl.coef * kl
        stats["kl"] = (kl.detach() * mask).sum() / n
    if entropy is not None:
        if cfg.entropy_coef > 0:
            per_token = per_token - cfg.entropy_coef * entropy
        stats["entropy"] = (entropy.detach() * mask).sum() / n
    if active is not None:
        per_token = torch.where(active.bool(), per_token, torch.zeros_like(per_token))
    norm = normalizer or Normalizer.of(mask, cfg.loss_agg_max_len)
    return aggregate(per_token, mask, cfg.loss_agg, norm), stats
