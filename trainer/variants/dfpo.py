"""DFPO (Ding et al. 2026, arXiv 2604.13088, App. B): GSPO whose post-clip sequence weights are
transformed within each prompt group so that tokens every response shares cancel (docs/algorithms.md §6).

A loss (``algorithm.loss=dfpo``) with its knobs under ``algorithm.dfpo``. It needs whole groups in
every mini- and micro-batch: the transform is taken over a group's G responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from trainer.intra_group import dfpo_group_weights, group_sums, sign_aware_clip
from trainer.knobs import knob
from trainer.registry import Loss, Needs, register_loss
from trainer.token_loss import TokenLoss, sequence_advantage, sequence_log_ratio


class DFPOTransform(str, Enum):
    min_replace = "min_replace"  # Eq. 50
    orth_proj_qp = "orth_proj_qp"  # Eq. 51, solved exactly
    orth_proj_closed_form = "orth_proj_closed_form"  # Eq. 52-55, truncate and rebalance
    scale_half = "scale_half"  # Table 3's control: s̃ = 0.5·s̄ (a smaller step, no group consistency)


@dataclass
class DFPOConfig:
    transform: DFPOTransform = knob(
        DFPOTransform.min_replace, "Intra-group transform of GSPO's post-clip sequence weights."
    )
    keep_clip_mask: bool = knob(False, "Zero gradient where GSPO's clip is active (false = coefficient only, Eq. 85).")
    stop_gradient: bool = knob(True, "Treat the transformed weights as constants (false = the paper's ablation).")
    floor: float = knob(1e-3, "ϵ floor of the closed-form Orth-Proj (Eq. 52; the paper gives no value).", gt=0.0)


def dfpo_loss(logp, old_logp, adv, mask, cfg, *, group_ids=None, surrogate=None) -> TokenLoss:
    """GSPO's post-clip weights s̄ (Eq. 47) replaced by s̃ = T(s̄, Â) within each group (Eq. 50–55),
    carried as L_{i,t} = −sg(s̃_i)·A_{i,t}·π/sg(π): gradient (1/G) Σ_i s̃_i Â_i (1/|y_i|) Σ_t ∇ℓ_{i,t}
    under seq_mean_token_mean (Eq. 85). DFPO's sign-aware clip replaces any surrogate.

    keep_clip_mask: no gradient from responses whose GSPO clip is active (s̄_i ≠ s_i).
    stop_gradient=false (the paper's ablation): L_{i,t} = −s̃_i(θ)·A_{i,t}, differentiated through
    the transform and s̄ → s; with min_replace and seq_mean_token_mean its gradient is 0
    (docs/algorithms.md §6.6).
    """
    d = cfg.dfpo
    if group_ids is None:
        raise ValueError(
            "algorithm.loss=dfpo transforms weights within each prompt group, so policy_loss "
            "needs group_ids [B] (the rollout's group index of each response)"
        )
    a_seq = sequence_advantage(adv, mask).detach()
    s = torch.exp(sequence_log_ratio(logp, old_logp, mask))
    s_bar = sign_aware_clip(s, a_seq, cfg.clip.low, cfg.clip.high)
    s_tilde = dfpo_group_weights(s_bar.detach() if d.stop_gradient else s_bar, a_seq, group_ids, d.transform, d.floor)
    clipped = s_bar.detach() != s.detach()
    keep = ~clipped if d.keep_clip_mask else torch.ones_like(clipped)
    loss = -_carrier(logp, s_tilde, keep, d.stop_gradient) * adv
    low, high = (clipped & (a_seq < 0))[:, None], (clipped & (a_seq > 0))[:, None]
    return TokenLoss(
        loss,
        s.detach()[:, None].expand_as(logp),
        low.expand_as(logp),
        high.expand_as(logp),
        torch.zeros_like(logp, dtype=torch.bool),
        seq_weight=s_tilde.detach(),
        stats=_stats(s_bar.detach(), s_tilde.detach(), a_seq, group_ids, mask),
    )


def _carrier(logp, s_tilde, keep, stop_gradient: bool) -> torch.Tensor:
    """[B,T] factor whose value is s̃_i and whose gradient is sg(s̃_i)·∇ℓ_{i,t} (stop-gradient) or
    ∇s̃_i(θ) (ablation); responses outside ``keep`` carry the value without a gradient."""
    if not stop_gradient:
        return torch.where(keep, s_tilde, s_tilde.detach())[:, None].expand_as(logp)
    pi_over_sg = torch.where(keep[:, None], torch.exp(logp - logp.detach()), torch.ones_like(logp))
    return s_tilde.detach()[:, None] * pi_over_sg


def _stats(s_bar, s_tilde, a_seq, group_ids, mask) -> dict[str, torch.Tensor]:
    """φ_i = s̃_i/s̄_i (Eq. 87; s̄_min/s̄_i under Min-Replace) over responses, |δ_g| = |Σ_g Â s̄| over groups."""
    rows = mask.sum(-1) > 0
    phi = (s_tilde / s_bar)[rows]
    delta = group_sums((a_seq * s_bar).to(torch.float64), group_ids).abs()
    return {
        "dfpo/phi_mean": phi.mean() if phi.numel() else phi.new_ones(()),
        "dfpo/delta_abs_mean": delta.mean() if delta.numel() else delta.new_zeros(()),
    }


def _check(cfg) -> list[str]:
    a = cfg.algorithm
    errors = []
    if a.clip.dual is not None:
        errors.append(
            f"algorithm.clip.dual={a.clip.dual}: DFPO's sign-aware clip (Eq. 47) has no dual clip; set it to null"
        )
    if a.grpo_fix.enabled:
        errors.append(
            "algorithm.grpo_fix.enabled=true: GRPO-fix replaces the clip that DFPO transforms; use one of them"
        )
    return errors


register_loss(
    Loss(
        "dfpo",
        dfpo_loss,
        "DFPO: GSPO with an intra-group transform of its post-clip weights (loss=dfpo).",
        needs=Needs(whole_groups=True, sequence_ratio=True, inert_on_policy=True),
        config=DFPOConfig,
        label=lambda cfg: f"gspo+dfpo_{cfg.algorithm.dfpo.transform.value}",
        check=_check,
    )
)
