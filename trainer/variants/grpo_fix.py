"""GRPO-fix (DFPO paper, arXiv 2604.13088, App. H): a symmetric clip in place of PPO's sign-dependent
one, so a token every response of a group shares gets no net gradient (docs/algorithms.md §6.8)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from trainer.knobs import knob
from trainer.registry import Feature, Needs, Surrogate, register_feature
from trainer.token_loss import TokenLoss


class GradForm(str, Enum):
    autograd = "autograd"  # gradient through clamp: 0 above 1+ε
    detached = "detached"  # sg(clip(r,0,1+ε))·A·∇log π (Eq. 81 literally)


@dataclass
class GRPOFixConfig:
    enabled: bool = knob(False, "Symmetric clip: per-token A·clip(r, 0, 1+ε_high) for both signs (DFPO App. H).")
    grad_form: GradForm = knob(GradForm.autograd, "Gradient through the clamp, or a detached coefficient (Eq. 81).")


def symmetric_clip(log_ratio: torch.Tensor, adv: torch.Tensor, cfg) -> TokenLoss:
    """L = −A·φ(r), φ(r) = clip(r, 0, 1+ε_high), for either sign of A (Eq. 79–81).

    grad_form=autograd differentiates the clamp (−A·r·∇ℓ below 1+ε_high, 0 above); detached uses
    sg(φ(r))·π/sg(π), whose gradient is −A·φ(r)·∇ℓ everywhere (Eq. 81 literally). Either way a token
    with the same r in every response of a group gets Σ_i A_i·φ(r) = 0 (Eq. 82).
    """
    ratio = torch.exp(log_ratio)
    high = 1.0 + cfg.clip.high
    if cfg.grpo_fix.grad_form == GradForm.detached:
        phi = ratio.detach().clamp(max=high) * torch.exp(log_ratio - log_ratio.detach())
    else:
        phi = ratio.clamp(max=high)
    r = ratio.detach()
    above = r > high
    return TokenLoss(-adv * phi, r, torch.zeros_like(above), above, torch.zeros_like(above))


def _check(cfg) -> list[str]:
    dual = cfg.algorithm.clip.dual
    if dual is not None:
        return [f"algorithm.clip.dual={dual}: GRPO-fix's symmetric clip has no dual clip; set it to null"]
    return []


register_feature(
    Feature(
        "grpo_fix",
        GRPOFixConfig,
        Surrogate(symmetric_clip),
        "GRPO-fix symmetric clipping.",
        needs=Needs(inert_on_policy=True),
        check=_check,
    )
)
