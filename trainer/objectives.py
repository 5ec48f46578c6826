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

from trainer.config import AlgorithmConfig, DFPOTransform, GradForm, KLPlacement, LossAgg
from trainer.intra_group import asym, dfpo_group_weights, group_sums, sign_aware_clip
from trainer.intra_group import dfpo_weights  # noqa: F401 - public API: trainer.objectives.dfpo_weights


class TokenLoss(NamedTuple):
    loss: torch.Tensor  # [B,T] per-token policy-gradient loss
    ratio: torch.Tensor  # [B,T] importance ratio the clip acted on (detached)
    clipped_low: torch.Tensor  # [B,T] bool: clip at 1−ε_low was active (A < 0)
    clipped_high: torch.Tensor  # [B,T] bool: clip at 1+ε_high was active (A > 0; GRPO-fix: r > 1+ε_high, any A)
    dual_clipped: torch.Tensor  # [B,T] bool: dual clip bound the loss (A < 0)
    seq_weight: torch.Tensor | None = None  # [B] trajectory weight w_i of Eq. 14 (detached), for Asym
    stats: dict[str, torch.Tensor] | None = None  # loss-specific diagnostics, merged into policy_loss's


POLICY_LOSSES: dict[str, Callable[..., TokenLoss]] = {}


def register_policy_loss(name: str):
    """A registered loss is fn(logp, old_logp, adv[B,T], mask, cfg, *, group_ids=None) -> TokenLoss."""

    def wrap(fn):
        POLICY_LOSSES[name] = fn
        return fn

    return wrap


def _clipped_surrogate(log_ratio: torch.Tensor, adv: torch.Tensor, cfg: AlgorithmConfig) -> TokenLoss:
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


def _symmetric_clip(log_ratio: torch.Tensor, adv: torch.Tensor, cfg: AlgorithmConfig) -> TokenLoss:
    """GRPO-fix (DFPO App. H, Eq. 79–81): L = −A·φ(r), φ(r) = clip(r, 0, 1+ε_high), for either sign of A.

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


def _surrogate(log_ratio: torch.Tensor, adv: torch.Tensor, cfg: AlgorithmConfig) -> TokenLoss:
    """The per-token clip the config selects: PPO's sign-dependent one, or GRPO-fix's symmetric one."""
    return (_symmetric_clip if cfg.grpo_fix.enabled else _clipped_surrogate)(log_ratio, adv, cfg)


def _masked_seq_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def sequence_advantage(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Â_i [B] from token advantages [B,T]: their masked mean (= A_i when broadcast); a row with no
    response tokens keeps its first column, so a group's Σ Â_i = 0 survives masked rows."""
    has_tokens = mask.sum(-1) > 0
    return torch.where(has_tokens, _masked_seq_mean(adv, mask), adv[:, 0])


@register_policy_loss("ppo_clip")
def ppo_clip_loss(logp, old_logp, adv, mask, cfg: AlgorithmConfig, *, group_ids=None) -> TokenLoss:
    """Token-level ratio r_{i,t} = exp(ℓ − ℓ_old): GRPO (Shao et al. 2024), DAPO, Dr.GRPO.

    Trajectory weight for Asym: the token-mean ratio of each response."""
    tok = _surrogate(logp - old_logp, adv, cfg)
    return tok._replace(seq_weight=_masked_seq_mean(tok.ratio, mask))


def sequence_log_ratio(logp, old_logp, mask) -> torch.Tensor:
    """log s_i = mean_t (ℓ − ℓ_old) over response tokens [B] (GSPO, Zheng et al. 2025 Eq. 7)."""
    lengths = mask.sum(-1).clamp(min=1)
    return ((logp - old_logp) * mask).sum(-1) / lengths


@register_policy_loss("gspo")
def gspo_loss(logp, old_logp, adv, mask, cfg: AlgorithmConfig, *, group_ids=None) -> TokenLoss:
    """Sequence ratio s_i clipped per sequence; written token-wise as sg(s_i)·π/sg(π) so the
    gradient is s_i·∇ℓ_{i,t} per token (GSPO-token form; equals GSPO with seq-mean-token-mean).

    With algorithm.dfpo.transform the post-clip weights are transformed within each group (DFPO).
    """
    if cfg.dfpo.transform != DFPOTransform.none:
        return dfpo_loss(logp, old_logp, adv, mask, cfg, group_ids=group_ids)
    log_s = sequence_log_ratio(logp, old_logp, mask).detach()
    tok = _surrogate(logp - logp.detach() + log_s.unsqueeze(-1), adv, cfg)
    return tok._replace(seq_weight=torch.exp(log_s))


def dfpo_loss(logp, old_logp, adv, mask, cfg: AlgorithmConfig, *, group_ids=None) -> TokenLoss:
    """DFPO (Ding et al. 2026, App. B): GSPO whose post-clip weights s̄ (Eq. 47) are replaced by
    s̃ = T(s̄, Â) within each group (Eq. 50–55), carried as L_{i,t} = −sg(s̃_i)·A_{i,t}·π/sg(π):
    gradient (1/G) Σ_i s̃_i Â_i (1/|y_i|) Σ_t ∇ℓ_{i,t} under seq_mean_token_mean (Eq. 85).

    keep_clip_mask: no gradient from responses whose GSPO clip is active (s̄_i ≠ s_i).
    stop_gradient=false (the paper's ablation): L_{i,t} = −s̃_i(θ)·A_{i,t}, differentiated through
    the transform and s̄ → s; with min_replace and seq_mean_token_mean its gradient is 0 (dfpo.md §3.4).
    """
    d = cfg.dfpo
    _check_dfpo_inputs(cfg, group_ids)
    a_seq = sequence_advantage(adv, mask).detach()
    s = torch.exp(sequence_log_ratio(logp, old_logp, mask))
    s_bar = sign_aware_clip(s, a_seq, cfg.clip.low, cfg.clip.high)
    s_tilde = dfpo_group_weights(s_bar.detach() if d.stop_gradient else s_bar, a_seq, group_ids, d.transform, d.floor)
    clipped = s_bar.detach() != s.detach()
    keep = ~clipped if d.keep_clip_mask else torch.ones_like(clipped)
    loss = -_dfpo_carrier(logp, s_tilde, keep, d.stop_gradient) * adv
    low, high = (clipped & (a_seq < 0))[:, None], (clipped & (a_seq > 0))[:, None]
    return TokenLoss(
        loss, s.detach()[:, None].expand_as(logp), low.expand_as(logp), high.expand_as(logp),
        torch.zeros_like(logp, dtype=torch.bool), seq_weight=s_tilde.detach(),
        stats=_dfpo_stats(s_bar.detach(), s_tilde.detach(), a_seq, group_ids, mask),
    )


def _check_dfpo_inputs(cfg: AlgorithmConfig, group_ids) -> None:
    if group_ids is None:
        name = getattr(cfg.dfpo.transform, "value", cfg.dfpo.transform)
        raise ValueError(
            f"algorithm.dfpo.transform={name}: DFPO transforms weights within each prompt group, so "
            "policy_loss needs group_ids [B] (the rollout's group index of each response)"
        )
    if cfg.clip.dual is not None:
        raise ValueError(f"algorithm.clip.dual={cfg.clip.dual}: DFPO's sign-aware clip (Eq. 47) has no dual clip; set it to null")


def _dfpo_carrier(logp, s_tilde, keep, stop_gradient: bool) -> torch.Tensor:
    """[B,T] factor whose value is s̃_i and whose gradient is sg(s̃_i)·∇ℓ_{i,t} (stop-gradient) or
    ∇s̃_i(θ) (ablation); responses outside ``keep`` carry the value without a gradient."""
    if not stop_gradient:
        return torch.where(keep, s_tilde, s_tilde.detach())[:, None].expand_as(logp)
    pi_over_sg = torch.where(keep[:, None], torch.exp(logp - logp.detach()), torch.ones_like(logp))
    return s_tilde.detach()[:, None] * pi_over_sg


def _dfpo_stats(s_bar, s_tilde, a_seq, group_ids, mask) -> dict[str, torch.Tensor]:
    """φ_i = s̃_i/s̄_i (Eq. 87; s̄_min/s̄_i under Min-Replace) over responses, |δ_g| = |Σ_g Â s̄| over groups."""
    rows = mask.sum(-1) > 0
    phi = (s_tilde / s_bar)[rows]
    delta = group_sums((a_seq * s_bar).to(torch.float64), group_ids).abs()
    return {
        "dfpo/phi_mean": phi.mean() if phi.numel() else phi.new_ones(()),
        "dfpo/delta_abs_mean": delta.mean() if delta.numel() else delta.new_zeros(()),
    }


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


def _policy_stats(tok: TokenLoss, adv, mask, group_ids) -> dict[str, torch.Tensor]:
    """Token means of the loss, ratio and clip indicators; the loss's own stats; Asym (Eq. 23)
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
        stats["asym"] = torch.tensor(asym(tok.seq_weight, sequence_advantage(adv, mask), group_ids), dtype=torch.float64)
    return stats


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
    group_ids: torch.Tensor | None = None,
    active: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss = agg(policy loss + kl.coef·KL − entropy_coef·H) and detached token-mean stats.

    ``advantages`` is [B] (broadcast over tokens) or [B,T] (after token-level reweighting).
    ``normalizer`` defaults to this batch's own; pass the mini-batch's when this is a micro-batch.
    ``group_ids`` [B] is the prompt group of each response: required by group transforms (DFPO,
    whose groups must be whole in this call); when given, the stats include ``asym``.
    ``active`` [B,T] (bool) keeps every term only on those tokens while ``mask`` still defines the
    denominators: one Lopti stage with ``lopti.mask_kl``.
    """
    mask = mask.to(logp.dtype)
    adv = advantages.unsqueeze(-1).expand_as(logp) if advantages.dim() == 1 else advantages
    if cfg.loss not in POLICY_LOSSES:
        raise ValueError(f"algorithm.loss={cfg.loss!r}: registered losses are {sorted(POLICY_LOSSES)}")
    tok = POLICY_LOSSES[cfg.loss](logp, old_logp, adv, mask, cfg, group_ids=group_ids)
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
