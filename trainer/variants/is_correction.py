"""Off-policy correction: importance weights between the behaviour policy μ that sampled a batch
(the sampler's log-probs: a lagged sampler's k-step-old weights, ``rollout.async_steps``, or vLLM's
engine) and π_old, the policy the update's ratio starts from (docs/async.md).

    r_{i,t} = π_old(y_{i,t}) / μ(y_{i,t})                     token modes
    r_i     = Π_t π_old(y_{i,t}) / μ(y_{i,t})  (over the loss mask)   sequence modes
    w = min(r, C)   (*_truncate: truncated IS, TIS)     w = r · 1[r ≤ C]   (*_mask)

The four modes and their semantics are TRL's ``vllm_importance_sampling_mode``; ``token_mask`` is
also AReaL's decoupled objective (the PPO ratio against the proximal policy π_old, each token's
loss weighted by π_old/μ and dropped above ``behav_imp_weight_cap``). The weight is a constant (no
gradient) that multiplies the token's advantage: for the clipped surrogate, max(−ρwA, −clip(ρ)wA) =
w·max(−ρA, −clip(ρ)A) for w ≥ 0, so this is the weighted per-token loss, the KL term unweighted,
as in both references. Dropped tokens keep their place in the loss's normaliser, as in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from trainer.knobs import knob
from trainer.registry import Feature, Needs, TokenTransform, register_feature


class ISMode(str, Enum):
    token_truncate = "token_truncate"
    token_mask = "token_mask"
    sequence_truncate = "sequence_truncate"
    sequence_mask = "sequence_mask"


@dataclass
class OffPolicyConfig:
    enabled: bool = knob(False, "Importance weights π_old/μ between the sampler's behaviour policy μ and π_old.")
    mode: ISMode = knob(ISMode.token_truncate, "token_truncate (TIS: min(r, cap)), token_mask (r, 0 above cap: "
                        "AReaL's decoupled loss), sequence_truncate, sequence_mask (r per response: Π_t r_t).")
    cap: float = knob(2.0, "C: weights above it are truncated to it (*_truncate) or dropped (*_mask).", ge=1.0)


def importance_weights(old_logp: torch.Tensor, behaviour_logp: torch.Tensor, mask: torch.Tensor,
                       mode: ISMode, cap: float) -> tuple[torch.Tensor, dict]:
    """(w [B,T], stats) for log-probs [B,T] of π_old and μ under the loss mask [B,T]."""
    mode = ISMode(mode)
    diff = (old_logp.detach() - behaviour_logp.detach()).double() * mask
    per_sequence = mode in (ISMode.sequence_truncate, ISMode.sequence_mask)
    ratio = (diff.sum(-1, keepdim=True) if per_sequence else diff).exp()
    over = ratio > cap
    truncate = mode in (ISMode.token_truncate, ISMode.sequence_truncate)
    w = ratio.clamp(max=cap) if truncate else ratio.masked_fill(over, 0)
    on = (mask > 0).any(-1, keepdim=True) if per_sequence else mask > 0
    raw = ratio[on.expand_as(ratio)]
    stats = {"is_ratio_mean": float(raw.mean()) if raw.numel() else 1.0,
             "is_ratio_max": float(raw.max()) if raw.numel() else 1.0,
             "is_capped_frac": float(over[on.expand_as(over)].float().mean()) if raw.numel() else 0.0}
    return w.expand_as(old_logp).to(old_logp.dtype), stats


def _apply(adv, ctx, section):
    if ctx.behaviour_logp is None:
        raise RuntimeError("algorithm.is_correction: the rollout backend returned no behaviour log-probs")
    w, stats = importance_weights(ctx.old_logp, ctx.behaviour_logp, ctx.mask, section.mode, section.cap)
    return adv * w.to(adv.dtype), stats


def _check(cfg) -> list[str]:
    from trainer import registry

    if registry.loss_of(cfg).needs.sequence_ratio:
        return [f"algorithm.is_correction.enabled=true: algorithm.loss={cfg.algorithm.loss} takes its ratio per "
                "response, so a per-token weight on its advantages is not a weighted token loss; use a token-ratio "
                "loss (ppo_clip)"]
    return []


register_feature(
    Feature(
        "is_correction",
        OffPolicyConfig,
        TokenTransform(_apply, order=90),  # last: it weights the advantage every other transform wrote
        "Importance weights between the behaviour policy and π_old (TRL's vLLM IS modes; AReaL's decoupled loss).",
        needs=Needs(behaviour_logp=True),
        check=_check,
        short="is",
    )
)
