"""Intra-group transforms of sequence weights (DFPO, arXiv 2604.13088; docs/algorithms.md §6).

DFPO (Ding et al. 2026, "Token Gradient Cancellation", App. B) rewrites GSPO's clip as a sign-aware
post-clip weight s̄_i (Eq. 47) and then replaces the group's weights s̄ by s̃ with Âᵀs̃ = 0, s̃ ≥ 0,
so that a token shared by every response of the group gets a zero net gradient. Pure functions of
one group's tensors [G], a batched version over many groups [B], and the paper's Asym metric.

Every transform is written in differentiable torch ops so that the paper's "no stop-gradient"
ablation can backpropagate through it; the DFPO loss passes a detached s̄ otherwise.
"""

from __future__ import annotations

from typing import Callable

import torch


def sign_aware_clip(s: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float) -> torch.Tensor:
    """Post-clip weight s̄_i (Eq. 47): min(s_i, 1+ε_high) if Â_i ≥ 0 else max(s_i, 1−ε_low).

    Equals GSPO's min(s_i Â_i, clip(s_i, 1−ε_low, 1+ε_high) Â_i) = Â_i·s̄_i (Eq. 48–49).
    """
    return torch.where(advantages >= 0, s.clamp(max=1.0 + eps_high), s.clamp(min=1.0 - eps_low))


# ---------------------------------------------------------------- one group
def _identity(s_bar: torch.Tensor, adv: torch.Tensor, floor: float) -> torch.Tensor:
    return s_bar


def _min_replace(s_bar: torch.Tensor, adv: torch.Tensor, floor: float) -> torch.Tensor:
    """s̃_i = min_j s̄_j for every i (Eq. 50); Âᵀs̃ = s̄_min·ΣÂ = 0 for zero-mean Â."""
    return s_bar.min().expand_as(s_bar)


def _scale_half(s_bar: torch.Tensor, adv: torch.Tensor, floor: float) -> torch.Tensor:
    """s̃_i = 0.5·s̄_i: Table 3's control, a global shrink with no group consistency (Âᵀs̃ = 0.5·Âᵀs̄)."""
    return 0.5 * s_bar


def _qp_multiplier(s_bar: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """λ with h(λ) = Σ Â_i·max(s̄_i − λÂ_i, 0) = 0.

    h is piecewise linear and non-increasing in λ (slope −Σ_active Â_i²) with breakpoints s̄_i/Â_i.
    Locate the segment holding the root from h at the sorted breakpoints, take the active set S
    inside it, and solve h = 0 there exactly: λ = Σ_S Â_i s̄_i / Σ_S Â_i² (differentiable in s̄).
    """
    s, nz = s_bar.detach(), adv != 0
    bp = (s[nz] / adv[nz]).sort().values
    h = (adv * (s - bp[:, None] * adv).clamp(min=0)).sum(-1)
    j = int((h > 0).sum())
    lo = bp[j - 1] if j > 0 else bp[0] - 1.0
    hi = bp[j] if j < bp.numel() else bp[-1] + 1.0
    mid = 0.5 * (lo + hi)
    active = nz & (s - mid * adv > 0)
    den = (adv[active] ** 2).sum()
    if den == 0:  # h ≡ 0 on this segment (one side of Â is empty): any λ in it is a root
        return mid
    return (adv[active] * s_bar[active]).sum() / den


def _orth_proj_qp(s_bar: torch.Tensor, adv: torch.Tensor, floor: float) -> torch.Tensor:
    """argmin_v ½‖v − s̄‖² s.t. Âᵀv = 0, v ≥ 0 (Eq. 51), solved exactly.

    KKT: v = max(s̄ − λÂ, 0) with the multiplier λ of the equality chosen so that Âᵀv = 0.
    If Â has one sign only, that side is set to 0 (the only feasible choice); Â ≡ 0 is handled
    by ``dfpo_weights``.
    """
    return (s_bar - _qp_multiplier(s_bar, adv) * adv).clamp(min=0)


def _truncate_rebalance(s_bar: torch.Tensor, adv: torch.Tensor, floor: float) -> torch.Tensor:
    """Closed-form Orth-Proj (Eq. 52–55): s⁺ = max(s̄, ϵ), then shrink the heavier side.

    m_P = Σ_P Â s⁺, m_N = Σ_N (−Â) s⁺, δ = m_P − m_N (Eq. 53). δ > 0: P side × α = m_N/m_P;
    δ < 0: N side × β = m_P/m_N. Eq. 55 prints β = −Σ_P Â s⁺ / Σ_N (−Â) s⁺, which is negative;
    the sign is dropped here so that β ∈ (0, 1] as the paper states. Entries with Â_i = 0 keep s⁺_i.
    Groups with P or N empty cannot be rebalanced and are returned unchanged.
    """
    if floor <= 0:
        raise ValueError(f"algorithm.dfpo.floor={floor}: must be > 0 (it keeps Σ_P Â s⁺ and Σ_N −Â s⁺ nonzero)")
    pos, neg = adv > 0, adv < 0
    if not (bool(pos.any()) and bool(neg.any())):
        return s_bar
    s_plus = s_bar.clamp(min=floor)
    m_pos = (adv * s_plus)[pos].sum()
    m_neg = (-adv * s_plus)[neg].sum()
    if m_pos > m_neg:
        return torch.where(pos, s_plus * (m_neg / m_pos), s_plus)
    if m_neg > m_pos:
        return torch.where(neg, s_plus * (m_pos / m_neg), s_plus)
    return s_plus


TRANSFORMS: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "none": _identity,
    "min_replace": _min_replace,
    "orth_proj_qp": _orth_proj_qp,
    "orth_proj_closed_form": _truncate_rebalance,
    "scale_half": _scale_half,
}


def _transform_fn(transform) -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    name = getattr(transform, "value", transform)
    if name not in TRANSFORMS:
        raise ValueError(f"algorithm.dfpo.transform={name!r}: must be one of {', '.join(sorted(TRANSFORMS))}")
    return TRANSFORMS[name]


def dfpo_weights(s_bar: torch.Tensor, advantages: torch.Tensor, transform, floor: float = 1e-3) -> torch.Tensor:
    """DFPO's transformed weights s̃ [G] of ONE group from post-clip weights s̄ [G] and advantages Â [G].

    ``transform``: none | min_replace (Eq. 50) | orth_proj_qp (Eq. 51) | orth_proj_closed_form
    (Eq. 52–55, ``floor`` = ϵ of Eq. 52) | scale_half (Table 3's control: 0.5·s̄). A group with
    Â ≡ 0 is returned unchanged by every transform. Computed in float64, returned in s̄'s dtype;
    gradients flow to s̄ when it requires them (the no-stop-gradient ablation).
    """
    fn = _transform_fn(transform)
    adv = advantages.detach().to(torch.float64)
    if not bool((adv != 0).any()):  # Âᵀs̄ = 0 already, and Â_i·s̃_i = 0 whatever s̃ is: leave it
        return s_bar
    return fn(s_bar.to(torch.float64), adv, floor).to(s_bar.dtype)


# ---------------------------------------------------------------- many groups
def dfpo_group_weights(
    s_bar: torch.Tensor, advantages: torch.Tensor, group_ids: torch.Tensor, transform, floor: float = 1e-3
) -> torch.Tensor:
    """``dfpo_weights`` applied within each group of a batch: s̄ [B], Â [B], group_ids [B] → s̃ [B].

    Every group must be whole in the batch (the transform is taken over the group's G responses).
    """
    fn = _transform_fn(transform)
    if fn is _identity:
        return s_bar
    pieces, order = [], []
    for g in torch.unique(group_ids):
        idx = torch.nonzero(group_ids == g).flatten()
        pieces.append(dfpo_weights(s_bar[idx], advantages[idx], transform, floor))
        order.append(idx)
    return torch.cat(pieces)[torch.cat(order).argsort()]


def group_sums(values: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Σ over each group's members [n_groups] (groups in sorted id order)."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n = int(inverse.max()) + 1 if inverse.numel() else 0
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, inverse, values)


def asym(weights: torch.Tensor, advantages: torch.Tensor, group_ids: torch.Tensor) -> float:
    """Asym = Var_{i∈group}(w_i·Â_i) (DFPO Eq. 23 / 94), averaged over the groups in the batch.

    The variance is the population one (divide by the group's size G): Eq. 23 takes it over the
    finite set i ∈ {1..G}. Groups with Â ≡ 0 count as 0.
    """
    if group_ids.numel() == 0:
        return 0.0
    wa = (weights.detach() * advantages.detach()).to(torch.float64)
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    mean = group_sums(wa, group_ids) / counts
    var = group_sums((wa - mean[inverse]) ** 2, group_ids) / counts
    return float(var.mean())
