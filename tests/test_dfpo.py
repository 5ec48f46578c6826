"""DFPO intra-group transforms (arXiv 2604.13088, App. B; docs/algorithms.md §6).

Sign-aware clip (Eq. 47); Min-Replace (Eq. 50); Positive Orth-Proj as an exact QP (Eq. 51,
checked against scipy and a brute force over active sets) and as truncate-and-rebalance
(Eq. 52–55, with the sign of Eq. 55's β fixed); the DFPO loss carrier's gradient (Eq. 85);
Asym (Eq. 23). Expected numbers are worked out by hand in the comment next to them.
GRPO-fix (App. H) is tests/test_grpo_fix.py.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from trainer.advantages import group_advantages
from trainer.config import AlgorithmConfig, ClipConfig, LossAgg
from trainer.intra_group import asym, dfpo_group_weights, dfpo_weights, sign_aware_clip
from trainer.objectives import policy_loss
from trainer.variants.dfpo import DFPOConfig

F64 = torch.float64
TRANSFORMS = ["min_replace", "orth_proj_qp", "orth_proj_closed_form"]


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def _close(actual, expected, tol=1e-9):
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64), rtol=0, atol=tol
    )


def _cfg(transform="none", *, keep_clip_mask=False, stop_gradient=True, agg=LossAgg.seq_mean_token_mean, **kw):
    """GSPO (transform none) or the DFPO loss with that transform."""
    return AlgorithmConfig(
        loss=kw.pop("loss", "gspo" if transform == "none" else "dfpo"),
        loss_agg=agg,
        clip=kw.pop("clip", ClipConfig(low=0.2, high=0.2)),
        dfpo=DFPOConfig(transform=transform, keep_clip_mask=keep_clip_mask, stop_gradient=stop_gradient),
        **kw,
    )


def _random_groups(seed: int, n_groups: int = 20, g: int = 8, binary: bool = True):
    """s̄ [n·g] = sign-aware clip of ratios e^{0.5·z}, Â from group_advantages, group ids [n·g]."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.arange(n_groups).repeat_interleave(g)
    rewards = (
        (torch.rand(n_groups * g, generator=gen) < 0.4).double() if binary else torch.randn(n_groups * g, generator=gen)
    )
    adv = group_advantages(rewards, ids).double()
    s = torch.exp(0.5 * torch.randn(n_groups * g, generator=gen, dtype=F64))
    return sign_aware_clip(s, adv, 0.2, 0.28), adv, ids


# ================================================================ sign-aware clip (Eq. 47)
def test_sign_aware_clip():
    # ε_low = 0.2, ε_high = 0.28. A ≥ 0: min(s, 1.28) → 1.5 ↦ 1.28, 0.5 stays; A < 0: max(s, 0.8) →
    # 1.5 stays, 0.5 ↦ 0.8; A = 0 takes the A ≥ 0 branch: 1.3 ↦ 1.28
    s = _t([1.5, 0.5, 1.5, 0.5, 1.3])
    adv = _t([1.0, 1.0, -1.0, -1.0, 0.0])
    _close(sign_aware_clip(s, adv, 0.2, 0.28), [1.28, 0.5, 1.5, 0.8, 1.28])


def test_sign_aware_clip_is_gspo_clip_times_advantage():
    # Eq. 48–49: min(s A, clip(s, 1−ε_low, 1+ε_high) A) = A·s̄ for every s, A
    s = torch.exp(torch.linspace(-1, 1, 41, dtype=F64))
    for a in (-2.0, -0.3, 0.0, 0.7):
        adv = torch.full_like(s, a)
        ppo = torch.minimum(s * adv, s.clamp(0.8, 1.28) * adv)
        _close(adv * sign_aware_clip(s, adv, 0.2, 0.28), ppo)


# ================================================================ Min-Replace (Eq. 50)
def test_min_replace_by_hand():
    # s̄ = [1.1, 0.9, 1.2] → every entry becomes min = 0.9; Âᵀs̃ = 0.9·(1 − 0.5 − 0.5) = 0
    _close(dfpo_weights(_t([1.1, 0.9, 1.2]), _t([1.0, -0.5, -0.5]), "min_replace"), [0.9, 0.9, 0.9])


def test_min_replace_includes_zero_advantage_responses():
    # docs/algorithms.md §6.2: the min runs over all G, the Â = 0 response included: min(1.1, 0.7, 0.9) = 0.7
    _close(dfpo_weights(_t([1.1, 0.7, 0.9]), _t([1.0, 0.0, -1.0]), "min_replace"), [0.7, 0.7, 0.7])


# ================================================================ Âᵀs̃ = 0 and s̃ ≥ 0 on random groups
@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("binary", [True, False])
def test_transform_is_orthogonal_to_advantages_and_nonnegative(transform, binary):
    # Orth-Proj enforces Âᵀs̃ = 0 for the Â it is given (to float64 rounding); Min-Replace gives
    # s̄_min·ΣÂ, and group_advantages' float32 Â sums to 0 only to ~1e-7
    s_bar, adv, ids = _random_groups(seed=1 + binary, binary=binary)
    s_tilde = dfpo_group_weights(s_bar, adv, ids, transform)
    assert (s_tilde >= 0).all()
    tol = 1e-6 if transform == "min_replace" else 1e-12
    for g in ids.unique():
        m = ids == g
        _close(adv[m] @ s_tilde[m], 0.0, tol=tol)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_zero_advantage_group_is_unchanged(transform):
    # Â ≡ 0 (all-correct or all-wrong group): nothing to fix, s̃ = s̄
    s_bar = _t([1.1, 0.9, 1.2, 0.5])
    _close(dfpo_weights(s_bar, torch.zeros(4, dtype=F64), transform), s_bar)


@pytest.mark.parametrize("transform", TRANSFORMS + ["none"])
def test_every_transform_is_the_identity_at_the_old_policy(transform):
    # θ = θ_old: s = 1 → s̄ = 1 → Min-Replace 1; Orth-Proj: Âᵀ1 = ΣÂ = 0 (to float32 rounding) → 1
    _, adv, ids = _random_groups(seed=3)
    s_bar = sign_aware_clip(torch.ones_like(adv), adv, 0.2, 0.28)
    _close(dfpo_group_weights(s_bar, adv, ids, transform), torch.ones_like(adv), tol=1e-6)


def test_batched_transform_equals_per_group_with_interleaved_groups():
    s_bar, adv, ids = _random_groups(seed=4, n_groups=5, g=4)
    perm = torch.randperm(ids.numel(), generator=torch.Generator().manual_seed(0))
    s_bar, adv, ids = s_bar[perm], adv[perm], ids[perm]
    for transform in TRANSFORMS:
        out = dfpo_group_weights(s_bar, adv, ids, transform)
        for g in ids.unique():
            m = ids == g
            _close(out[m], dfpo_weights(s_bar[m], adv[m], transform))


def test_scale_half_is_a_plain_shrink_that_keeps_the_imbalance():
    """Table 3's control halves every weight: the group's net coefficient Âᵀs̃ is half GSPO's, not 0,
    and it is not the identity at the old policy (it acts on-policy too: a smaller step)."""
    s_bar, adv = _t([1.2, 0.9, 1.0, 0.7]), _t([1.0, 1.0, -1.0, -1.0])
    out = dfpo_weights(s_bar, adv, "scale_half")
    _close(out, [0.6, 0.45, 0.5, 0.35])
    assert float(adv @ out) == pytest.approx(0.5 * float(adv @ s_bar)) and float(adv @ s_bar) != 0
    _close(dfpo_weights(_t([1.0, 1.0]), _t([1.0, -1.0]), "scale_half"), [0.5, 0.5])


def test_unknown_transform_is_an_error():
    with pytest.raises(ValueError, match="algorithm.dfpo.transform"):
        dfpo_weights(_t([1.0, 1.0]), _t([1.0, -1.0]), "orth_proj")


# ================================================================ Orth-Proj QP (Eq. 51), solved exactly
def _qp_brute_force(s_bar: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """Enumerate which entries sit at the bound v_i = 0; the free ones solve the equality-only
    projection v_F = s̄_F − λ Â_F, λ = Â_F·s̄_F / ‖Â_F‖². Keep the feasible candidate nearest to s̄."""
    best, best_obj = None, math.inf
    for zeros in itertools.product([False, True], repeat=len(s_bar)):
        free = ~np.array(zeros)
        v = np.zeros_like(s_bar)
        den = adv[free] @ adv[free]
        lam = (adv[free] @ s_bar[free]) / den if den > 0 else 0.0
        v[free] = s_bar[free] - lam * adv[free]
        if (v >= -1e-12).all() and abs(adv @ v) < 1e-10:
            obj = 0.5 * np.sum((v - s_bar) ** 2)
            if obj < best_obj:
                best, best_obj = v, obj
    return best


def _qp_slsqp(s_bar: np.ndarray, adv: np.ndarray) -> np.ndarray:
    res = minimize(
        lambda v: 0.5 * np.sum((v - s_bar) ** 2),
        x0=np.ones_like(s_bar),
        jac=lambda v: v - s_bar,
        constraints=[{"type": "eq", "fun": lambda v: adv @ v, "jac": lambda v: adv}],
        bounds=[(0.0, None)] * len(s_bar),
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 500},
    )
    assert res.success, res.message
    return res.x


@pytest.mark.parametrize("seed", range(6))
def test_qp_matches_scipy_and_brute_force(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    g = 7
    adv = group_advantages(torch.randn(g, generator=gen, dtype=F64), torch.zeros(g, dtype=torch.long)).double()
    s_bar = torch.exp(0.8 * torch.randn(g, generator=gen, dtype=F64))  # wide: some bounds bind
    ours = dfpo_weights(s_bar, adv, "orth_proj_qp").numpy()
    _close(ours, _qp_slsqp(s_bar.numpy(), adv.numpy()), tol=1e-6)
    _close(ours, _qp_brute_force(s_bar.numpy(), adv.numpy()), tol=1e-9)


def test_qp_by_hand_with_an_active_bound():
    # Â = [1, 1, −2], s̄ = [0.1, 2.0, 0.5]. Without bounds λ = Âᵀs̄/‖Â‖² = (0.1 + 2 − 1)/6 = 0.18333
    # gives v_0 = 0.1 − 0.18333 < 0, so v_0 = 0; on {1, 2}: λ = (2 − 1)/(1 + 4) = 0.2,
    # v = [0, 2 − 0.2, 0.5 + 0.4] = [0, 1.8, 0.9]; Âᵀv = 1.8 − 1.8 = 0; KKT multiplier of v_0 ≥ 0:
    # μ_0 = λÂ_0 − s̄_0 = 0.2 − 0.1 = 0.1 ≥ 0
    _close(dfpo_weights(_t([0.1, 2.0, 0.5]), _t([1.0, 1.0, -2.0]), "orth_proj_qp"), [0.0, 1.8, 0.9])


def test_qp_keeps_zero_advantage_entries():
    # Â_1 = 0 does not enter the constraint: v_1 = s̄_1. Others: λ = (1.2 − 0.8)/2 = 0.2 → [1.0, ·, 1.0]
    _close(dfpo_weights(_t([1.2, 0.7, 0.8]), _t([1.0, 0.0, -1.0]), "orth_proj_qp"), [1.0, 0.7, 1.0])


def test_qp_with_one_sided_advantages_zeroes_that_side():
    # Â = [1, 2, 0]: Âᵀv = 0 with v ≥ 0 forces v_0 = v_1 = 0 (the only feasible point on that side)
    _close(dfpo_weights(_t([1.2, 0.7, 0.8]), _t([1.0, 2.0, 0.0]), "orth_proj_qp"), [0.0, 0.0, 0.8])


@pytest.mark.parametrize("transform", ["orth_proj_qp", "orth_proj_closed_form"])
def test_transforms_are_differentiable_for_the_no_stop_gradient_ablation(transform):
    # generic point (no ties, no bound exactly at 0): autograd of the transform = finite differences
    adv = _t([1.0, 1.0, -0.5, -1.5])
    s_bar = _t([0.1, 2.0, 0.9, 1.3]).requires_grad_(True)  # closed form: m_P = 2.1 < m_N = 2.4
    assert torch.autograd.gradcheck(lambda s: dfpo_weights(s, adv, transform), (s_bar,))


# ================================================================ truncate-and-rebalance (Eq. 52–55)
def test_closed_form_positive_delta_shrinks_the_positive_side():
    # Â = [1, 1, −1, −1], s̄ = [1.2, 1.0, 0.8, 0.9] (≥ ϵ, so s⁺ = s̄). m_P = 2.2, m_N = 1.7,
    # δ = 0.5 > 0 → α = m_N/m_P = 17/22 = 0.7727273: s̃ = [1.2·17/22, 17/22, 0.8, 0.9]
    # = [0.9272727, 0.7727273, 0.8, 0.9]; Âᵀs̃ = 1.7 − 1.7 = 0
    out = dfpo_weights(_t([1.2, 1.0, 0.8, 0.9]), _t([1.0, 1.0, -1.0, -1.0]), "orth_proj_closed_form")
    _close(out, [1.2 * 17 / 22, 17 / 22, 0.8, 0.9])


def test_closed_form_negative_delta_shrinks_the_negative_side():
    # Â = [2, −1, −1], s̄ = [0.8, 1.0, 1.1]. m_P = 1.6, m_N = 2.1, δ = −0.5 < 0.
    # β = m_P/m_N = 16/21 = 0.7619048: s̃ = [0.8, 16/21, 1.1·16/21] = [0.8, 0.7619048, 0.8380952].
    # Eq. 55 as printed, β = −Σ_P Â s⁺ / Σ_N (−Â) s⁺ = −1.6/2.1 = −0.7619 < 0, would make the
    # negative side's weights negative (and flip their gradient); the implementation drops the sign.
    s_bar, adv = _t([0.8, 1.0, 1.1]), _t([2.0, -1.0, -1.0])
    out = dfpo_weights(s_bar, adv, "orth_proj_closed_form")
    _close(out, [0.8, 16 / 21, 1.1 * 16 / 21])
    printed_beta = -(adv[adv > 0] @ s_bar[adv > 0]) / (-adv[adv < 0] @ s_bar[adv < 0])
    assert printed_beta < 0


def test_closed_form_floor_then_rebalance_can_go_below_the_floor():
    # ϵ = 1e-3: s̄ = [0.2, 1.0, 1e-5] → s⁺ = [0.2, 1.0, 1e-3]. Â = [1, −1, −1]: m_P = 0.2,
    # m_N = 1.001, δ < 0 → β = 0.2/1.001 = 0.1998002; s̃ = [0.2, 0.1998002, 1.998002e-4].
    # The last entry is below ϵ: the paper's "s̃ ⪰ ϵ1" does not hold after scaling; s̃ ≥ 0 does.
    out = dfpo_weights(_t([0.2, 1.0, 1e-5]), _t([1.0, -1.0, -1.0]), "orth_proj_closed_form", floor=1e-3)
    beta = 0.2 / 1.001
    _close(out, [0.2, beta, 1e-3 * beta], tol=1e-12)
    assert out[2] < 1e-3


def test_closed_form_leaves_zero_advantage_entries_and_one_sided_groups():
    # Â = [1, 0, −1], s̄ = [1.2, 0.7, 0.8]: δ = 0.4 > 0 → α = 0.8/1.2; the Â = 0 entry is not scaled
    _close(dfpo_weights(_t([1.2, 0.7, 0.8]), _t([1.0, 0.0, -1.0]), "orth_proj_closed_form"), [0.8, 0.7, 0.8])
    # no negative side: nothing to rebalance against, the group is left as it is
    _close(dfpo_weights(_t([1.2, 0.7]), _t([1.0, 0.0]), "orth_proj_closed_form"), [1.2, 0.7])


# ================================================================ DFPO loss (Eq. 85)
# One group, G = 3, T = 3, lengths 3, 2, 1; Â = [1, −0.5, −0.5] (Σ = 0); δ = ℓ − ℓ_old.
# Row 0: δ mean 0.1 → s_0 = e^0.1 = 1.1051709 (A > 0, ≤ 1.2: s̄_0 = s_0)
# Row 1: δ mean −0.05 → s_1 = e^−0.05 = 0.9512294 (A < 0, ≥ 0.8: s̄_1 = s_1)
# Row 2: δ = 0.3 → s_2 = e^0.3 = 1.3498588 (A < 0: max(s, 0.8) = s_2, unclipped)
# Min-Replace: s̃ = s̄_1 = 0.9512294 for every row.
MASK = _t([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
OLD = _t([[-1.0, -2.0, -0.5], [-0.7, -1.2, -3.0], [-0.4, -2.0, -1.0]])
DELTA = _t([[0.3, -0.1, 0.1], [0.05, -0.15, 7.0], [0.3, 9.0, 9.0]])  # masked entries are junk
ADV = _t([1.0, -0.5, -0.5])
GROUP = torch.zeros(3, dtype=torch.long)
S = [math.exp(0.1), math.exp(-0.05), math.exp(0.3)]
LENGTHS = [3, 2, 1]


def _dfpo_grad(cfg, delta=DELTA, adv=ADV, group=GROUP):
    logp = (OLD + delta).clone().requires_grad_(True)
    loss, stats = policy_loss(logp, OLD, adv, MASK, cfg, group_ids=group)
    (grad,) = torch.autograd.grad(loss, logp, allow_unused=True)
    return float(loss.detach()), (torch.zeros_like(logp) if grad is None else grad), stats


def _hand_grad(s_tilde, adv, keep=(True, True, True), n_seqs=3):
    """(1/n) Σ_i sg(s̃_i)·Â_i·(1/|y_i|)·Σ_t ∇ℓ_{i,t} as a loss gradient: −s̃_i Â_i / (|y_i|·n) per token."""
    rows = [
        [-s_tilde[i] * adv[i] / (LENGTHS[i] * n_seqs) * keep[i] * float(MASK[i, t]) for t in range(3)] for i in range(3)
    ]
    return _t(rows)


def test_dfpo_min_replace_gradient_by_hand():
    # dL/dℓ_{i,t} = −s̃ Â_i / (|y_i|·3): row 0 −0.9512294/9 = −0.1056922; row 1 +0.9512294·0.5/6 = 0.0792691;
    # row 2 +0.9512294·0.5/3 = 0.1585382. Loss value = (1/3) Σ_i −s̃ Â_i = −s̃·ΣÂ/3 = 0
    loss, grad, _ = _dfpo_grad(_cfg("min_replace"))
    _close(grad, _hand_grad([S[1]] * 3, ADV.tolist()))
    _close(loss, 0.0, tol=1e-12)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_dfpo_gradient_is_the_transformed_weight_times_advantage(transform):
    s_tilde = dfpo_weights(_t(S), ADV, transform)
    _, grad, _ = _dfpo_grad(_cfg(transform))
    _close(grad, _hand_grad(s_tilde.tolist(), ADV.tolist()))


def test_dfpo_stats_by_hand():
    # φ_i = s̃/s̄_i = [s_1/s_0, 1, s_1/s_2]; δ = Σ Â s̄ = s_0 − 0.5 s_1 − 0.5 s_2 = 1.1051709 − 1.1505441;
    # Asym = Var(s̃ Â) = s̃²·Var([1, −.5, −.5]) = 0.9048374·0.5 = 0.4524187 (population variance)
    _, _, stats = _dfpo_grad(_cfg("min_replace"))
    _close(stats["dfpo/phi_mean"], (S[1] / S[0] + 1 + S[1] / S[2]) / 3)
    _close(stats["dfpo/delta_abs_mean"], abs(S[0] - 0.5 * S[1] - 0.5 * S[2]))
    _close(stats["asym"], S[1] ** 2 * 0.5)


# Row 0 pushed above the clip: δ row 0 mean 0.3 → s_0 = e^0.3 = 1.3498588 > 1.2 with Â > 0 → s̄_0 = 1.2
CLIP_DELTA = DELTA + _t([[0.2, 0.2, 0.2], [0, 0, 0], [0, 0, 0]])


def test_dfpo_keep_clip_mask_zeroes_clipped_sequences():
    # s̄ = [1.2, s_1, s_2] → Min-Replace s̃ = s_1. Coefficient-only (default): row 0 still has
    # gradient −s_1·1/(3·3); with keep_clip_mask its gradient is 0, other rows unchanged.
    _, free, stats = _dfpo_grad(_cfg("min_replace"), delta=CLIP_DELTA)
    _close(free, _hand_grad([S[1]] * 3, ADV.tolist()))
    _close(stats["clip_frac_high"], 3 / 6)  # row 0's 3 tokens of 6
    loss, masked, _ = _dfpo_grad(_cfg("min_replace", keep_clip_mask=True), delta=CLIP_DELTA)
    _close(masked, _hand_grad([S[1]] * 3, ADV.tolist(), keep=(False, True, True)))
    _close(loss, 0.0, tol=1e-12)  # the value is still −s̃·ΣÂ/3 = 0


def test_dfpo_without_stop_gradient_min_replace_has_zero_gradient():
    # docs/algorithms.md §6.6: L = (1/G) Σ_i −s̄_min(θ)·Â_i = −s̄_min(θ)·ΣÂ/G ≡ 0 under seq_mean_token_mean
    _, grad, _ = _dfpo_grad(_cfg("min_replace", stop_gradient=False))
    _close(grad, torch.zeros(3, 3), tol=1e-12)


def test_dfpo_without_stop_gradient_is_nonzero_under_token_mean():
    # token_mean weighs rows by length: L = Σ_i |y_i|·(−s̄_min Â_i)/6 = −s̄_min·(3 − 1 − 0.5)/6 = −0.25·s̄_min.
    # s̄_min = s_1 (unclipped) and ∂s_1/∂ℓ_{1,t} = s_1/2 → dL/dℓ_{1,t} = −0.125·s_1 = −0.1189037; else 0
    _, grad, _ = _dfpo_grad(_cfg("min_replace", stop_gradient=False, agg=LossAgg.token_mean))
    _close(grad, [[0.0] * 3, [-0.125 * S[1]] * 2 + [0.0], [0.0] * 3])


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("keep_clip_mask", [False, True])
def test_dfpo_equals_gspo_at_the_old_policy(transform, keep_clip_mask):
    # θ = θ_old: s = 1, s̃ = 1, so DFPO's loss and gradient are GSPO's (docs/algorithms.md §6.9)
    torch.manual_seed(5)
    old = torch.randn(8, 5, dtype=F64)
    mask = (torch.rand(8, 5) < 0.8).double()
    mask[:, 0] = 1
    ids = torch.arange(2).repeat_interleave(4)
    adv = group_advantages(torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1]), ids)
    out = []
    for cfg in (_cfg("none"), _cfg(transform, keep_clip_mask=keep_clip_mask)):
        logp = old.clone().requires_grad_(True)
        loss, _ = policy_loss(logp, old, adv, mask, cfg, group_ids=ids)
        out.append((loss.detach(), torch.autograd.grad(loss, logp)[0]))
    _close(out[1][0], out[0][0], tol=1e-6)
    _close(out[1][1], out[0][1], tol=1e-6)


def test_dfpo_needs_group_ids():
    logp = OLD.clone().requires_grad_(True)
    with pytest.raises(ValueError, match="group_ids"):
        policy_loss(logp, OLD, ADV, MASK, _cfg("min_replace"))


# ================================================================ Asym (Eq. 23)
def test_asym_by_hand():
    # group 0: w·Â = [1·1, 2·(−1)] = [1, −2], mean −0.5, Var = (1.5² + 1.5²)/2 = 2.25
    # group 1: [0.5, −0.5], Var = 0.25. Mean over groups = 1.25
    _close(asym(_t([1.0, 2.0, 1.0, 1.0]), _t([1.0, -1.0, 0.5, -0.5]), torch.tensor([0, 0, 1, 1])), 1.25)


def test_asym_of_a_group_constant_weight_is_weight_squared_times_advantage_variance():
    # Min-Replace makes w constant: Asym = w²·Var(Â) = 0.81·Var([1, −1, 0]) = 0.81·2/3 = 0.54
    _close(asym(_t([0.9, 0.9, 0.9]), _t([1.0, -1.0, 0.0]), torch.zeros(3, dtype=torch.long)), 0.54)


@pytest.mark.parametrize("loss, weights", [("gspo", "s"), ("ppo_clip", "token_mean_r")])
def test_policy_loss_reports_asym_of_its_trajectory_weights(loss, weights):
    # GSPO: w_i = s_i; PPO clip: w_i = token-mean of r_{i,t} over the response.
    # Rows of the DFPO example: s = [e^0.1, e^−0.05, e^0.3];
    # token-mean r: row 0 (e^0.3 + e^−0.1 + e^0.1)/3, row 1 (e^0.05 + e^−0.15)/2, row 2 e^0.3
    logp = OLD + DELTA
    _, stats = policy_loss(logp, OLD, ADV, MASK, _cfg(loss=loss), group_ids=GROUP)
    if weights == "s":
        w = S
    else:
        w = [
            (math.exp(0.3) + math.exp(-0.1) + math.exp(0.1)) / 3,
            (math.exp(0.05) + math.exp(-0.15)) / 2,
            math.exp(0.3),
        ]
    wa = np.array(w) * ADV.numpy()
    _close(stats["asym"], np.var(wa))
    _, stats = policy_loss(logp, OLD, ADV, MASK, _cfg(loss=loss))
    assert "asym" not in stats
