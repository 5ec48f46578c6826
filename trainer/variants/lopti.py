"""Lopti, low-probability token isolation (arXiv 2505.12929): each rollout batch updates twice,
first on the tokens whose π_old probability is below η, then on the rest (docs/algorithms.md §3)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from trainer.knobs import knob
from trainer.registry import Feature, Needs, StagePlan, register_feature
from trainer.update_plan import Stage


class LoptiOrder(str, Enum):
    low_first = "low_first"  # the paper's order
    high_first = "high_first"  # the collapse ablation


class LoptiDenominator(str, Enum):
    all_tokens = "all_tokens"  # reference code: each stage divides by every response token
    stage_tokens = "stage_tokens"  # renormalize by the stage's own tokens


@dataclass
class LoptiConfig:
    enabled: bool = knob(False, "Two-stage update on each rollout batch, split by π_old(y_t) < eta.")
    eta: float = knob(0.5, "Lopti η: probability threshold; low = π_old < η, high = π_old ≥ η.", gt=0.0, lt=1.0)
    order: LoptiOrder = knob(LoptiOrder.low_first, "Which token set updates first (high_first = collapse ablation).")
    denominator: LoptiDenominator = knob(LoptiDenominator.all_tokens, "Loss normalizer of each stage.")
    recompute_old_logp: bool = knob(
        False, "Refresh π_old (the ratio base; the split stays) between stages; reference: no."
    )
    mask_kl: bool = knob(True, "KL and entropy terms only on the active stage's tokens (reference code).")


def lopti_masks(old_logp: torch.Tensor, mask: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split response tokens by π_old(y_t) = exp(old_logp): (low [B,T], high [B,T]) bool masks.

    low = π_old < η, high = π_old ≥ η (a token exactly at η is high, as in the reference code's
    ``exp(old_log_probs) < η``); padding is in neither, so low | high == mask and low & high == ∅.
    """
    m = mask.bool()
    prob = old_logp.detach().exp()
    low = (prob < eta) & m
    return low, m & ~low


def lopti_stages(old_logp: torch.Tensor, loss_mask: torch.Tensor, lo: LoptiConfig) -> list[Stage]:
    """The two stages, low-probability tokens first by default; the split is taken once, from the
    π_old of sampling, and kept for both (the second may refresh the ratio's base, not the split)."""
    low, high = lopti_masks(old_logp, loss_mask, lo.eta)
    sets = [("low", low), ("high", high)]
    if lo.order == LoptiOrder.high_first:
        sets.reverse()
    by_stage = lo.denominator == LoptiDenominator.stage_tokens
    return [
        Stage(
            name,
            m,
            m.float() if by_stage else loss_mask,
            mask_all_terms=lo.mask_kl,
            refresh_old_logp=i > 0 and lo.recompute_old_logp,
        )
        for i, (name, m) in enumerate(sets)
    ]


def _check(cfg) -> list[str]:
    epochs = cfg.algorithm.ppo_epochs
    if epochs > 1:
        return [
            f"algorithm.ppo_epochs={epochs}: Lopti already makes two passes over each rollout batch "
            "(stage 1 on one token set, stage 2 on the other, each over every mini-batch); ppo_epochs > 1 would "
            "repeat each stage, which no paper ran. Use ppo_epochs=1 with Lopti"
        ]
    return []


def _warn(cfg) -> list[str]:
    if cfg.algorithm.lopti.order == LoptiOrder.high_first:
        return ["algorithm.lopti.order=high_first is the paper's collapse ablation, not a recommended setting"]
    return []


register_feature(
    Feature(
        "lopti",
        LoptiConfig,
        StagePlan(lopti_stages),
        "Low-probability token isolation (Lopti, arXiv 2505.12929).",
        needs=Needs(off_policy=True),
        check=_check,
        warn=_warn,
    )
)
