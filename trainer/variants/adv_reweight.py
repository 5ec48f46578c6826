"""Advantage Reweighting (AR; Lopti paper, arXiv 2505.12929, Eq. 4): scale each token's advantage
by its π_old probability, so low-probability tokens stop dominating the update (docs/algorithms.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.knobs import knob
from trainer.registry import Feature, TokenTransform, register_feature


@dataclass
class AdvReweightConfig:
    enabled: bool = knob(False, "Advantage Reweighting: token advantage × (α·π_old(y_t) + 1 − α).")
    alpha: float = knob(
        0.3, "AR α (Lopti paper: 0.3 on K&K, 0.1 on math); 0 leaves advantages as they are.", ge=0.0, le=1.0
    )


def per_token(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [B] broadcast over tokens, or A [B,T] as is, as a fresh [B,T] tensor."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    return advantages.expand(like.shape[0], like.shape[1]).clone()


def advantage_reweight(advantages: torch.Tensor, old_logp: torch.Tensor, alpha: float) -> torch.Tensor:
    """Â_{i,t} = [α·π_old(y_{i,t}) + (1 − α)]·A_{i,t} (Eq. 4), [B,T].

    ``advantages`` is [B] (broadcast over tokens) or [B,T]; ``old_logp`` [B,T] is the rollout
    policy's log-prob of the sampled token (temperature-scaled, as in the reference code). The
    weight is a constant: no gradient flows into ``old_logp``. Both signs of A are scaled; α = 0
    returns A itself (GRPO), bit for bit.
    """
    adv = per_token(advantages, old_logp)
    if alpha == 0.0:
        return adv
    weight = alpha * old_logp.detach().exp() + (1.0 - alpha)
    return weight.to(adv.dtype) * adv


def _apply(adv, ctx, section):
    return advantage_reweight(adv, ctx.old_logp, section.alpha), {}


register_feature(
    Feature(
        "adv_reweight",
        AdvReweightConfig,
        TokenTransform(_apply, order=20),
        "Advantage Reweighting (arXiv 2505.12929, Eq. 4).",
        short="ar",
    )
)
