"""Sign-weighted advantages: scale the token advantages of one sign (docs/algorithms.md §8).

Â_{i,t} = w⁺·A_{i,t} where A_{i,t} > 0, w⁻·A_{i,t} where A_{i,t} < 0 (0 stays 0). ``negative=0`` is
positive-only training and ``positive=0`` negative-only training, the probes the cancellation
paper (arXiv 2605.08666, Fig. 1d) runs beside GRPO; a small ``positive`` is the down-weighted
positive reinforcement of Zhu et al. 2025 (arXiv 2506.01347). The smallest example of a token
transform: this module and ``conf/algorithm/features/sign_weight.yaml`` are all it takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.knobs import knob
from trainer.registry import Feature, TokenTransform, register_feature


@dataclass
class SignWeightConfig:
    enabled: bool = knob(False, "Scale positive and negative token advantages by separate weights.")
    positive: float = knob(1.0, "w⁺: factor on advantages > 0 (0 = negative-only training).", ge=0.0)
    negative: float = knob(1.0, "w⁻: factor on advantages < 0 (0 = positive-only training).", ge=0.0)


def sign_weight(advantages: torch.Tensor, positive: float, negative: float) -> torch.Tensor:
    """w⁺·A where A > 0, w⁻·A where A < 0, A elsewhere; same shape and dtype as ``advantages``."""
    scale = torch.where(advantages > 0, positive, torch.where(advantages < 0, negative, 1.0))
    return advantages * scale.to(advantages.dtype)


def _apply(adv, ctx, section):
    out = sign_weight(adv, section.positive, section.negative)
    zeroed = ((out == 0) & (adv != 0) & ctx.mask.bool()).sum()
    return out, {"sign_weight/zeroed_frac": float(zeroed) / max(float(ctx.mask.sum()), 1.0)}


def _warn(cfg) -> list[str]:
    s = cfg.algorithm.sign_weight
    if s.positive == 1.0 and s.negative == 1.0:
        return ["algorithm.sign_weight.enabled=true with positive=1 and negative=1 leaves every advantage unchanged"]
    return []


register_feature(
    Feature(
        "sign_weight",
        SignWeightConfig,
        TokenTransform(_apply, order=30),
        "Sign-weighted advantages (positive-only / negative-only training).",
        warn=_warn,
    )
)
