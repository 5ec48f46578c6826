"""The per-token pieces every registered policy loss is built from (docs/algorithms.md §1.2-§1.3).

``TokenLoss`` is what a loss returns; ``clipped_surrogate`` is PPO's clip that the losses use
unless a ``Surrogate`` feature (GRPO-fix) replaces it. Shapes: B responses, T completion
positions; ``mask`` is 1 on response tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class TokenLoss(NamedTuple):
    loss: torch.Tensor  # [B,T] per-token policy-gradient loss
    ratio: torch.Tensor  # [B,T] importance ratio the clip acted on (detached)
    clipped_low: torch.Tensor  # [B,T] bool: clip at 1−ε_low was active (A < 0)
    clipped_high: torch.Tensor  # [B,T] bool: clip at 1+ε_high was active (A > 0; GRPO-fix: r > 1+ε_high, any A)
    dual_clipped: torch.Tensor  # [B,T] bool: dual clip bound the loss (A < 0)
    seq_weight: torch.Tensor | None = None  # [B] trajectory weight w_i of DFPO Eq. 14 (detached), for Asym
    stats: dict[str, torch.Tensor] | None = None  # loss-specific diagnostics, merged into policy_loss's


def clipped_surrogate(log_ratio: torch.Tensor, adv: torch.Tensor, cfg) -> TokenLoss:
    """L = −min(r A, clip(r, 1−ε_low, 1+ε_high) A); with dual clip c, L ≤ c·|A| for A < 0."""
    ratio = torch.exp(log_ratio)
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


def masked_seq_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def sequence_advantage(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Â_i [B] from token advantages [B,T]: their masked mean (= A_i when broadcast); a row with no
    response tokens keeps its first column, so a group's Σ Â_i = 0 survives masked rows."""
    has_tokens = mask.sum(-1) > 0
    return torch.where(has_tokens, masked_seq_mean(adv, mask), adv[:, 0])


def sequence_log_ratio(logp, old_logp, mask) -> torch.Tensor:
    """log s_i = mean_t (ℓ − ℓ_old) over response tokens [B] (GSPO, arXiv 2507.18071, Eq. 7)."""
    lengths = mask.sum(-1).clamp(min=1)
    return ((logp - old_logp) * mask).sum(-1) / lengths
