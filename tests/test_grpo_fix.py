"""GRPO-fix symmetric clipping (DFPO paper, arXiv 2604.13088, App. H; docs/algorithms.md §6.8).

The symmetric clip on single tokens (Eq. 79–81) under both gradient forms, on GSPO's sequence
ratio, and the shared-token cancellation it restores (Eq. 82) where PPO's clip breaks it. Expected
numbers are worked out by hand in the comment next to them.
"""

import math

import pytest
import torch

from trainer.advantages import group_advantages
from trainer.config import AlgorithmConfig, ClipConfig, LossAgg
from trainer.objectives import policy_loss
from trainer.variants.grpo_fix import GradForm, GRPOFixConfig

F64 = torch.float64


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def _close(actual, expected, tol=1e-9):
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64), rtol=0, atol=tol
    )


# ================================================================ GRPO-fix (Eq. 79–81) on single tokens
def _fix_cfg(form, loss="ppo_clip", clip=ClipConfig(low=0.2, high=0.2), agg=LossAgg.token_mean):
    return AlgorithmConfig(loss=loss, loss_agg=agg, clip=clip, grpo_fix=GRPOFixConfig(enabled=True, grad_form=form))


def _one_token(r: float, adv: float, cfg):
    logp = torch.tensor([[math.log(r)]], dtype=F64, requires_grad=True)
    loss, stats = policy_loss(logp, torch.zeros(1, 1, dtype=F64), _t([adv]), _t([[1.0]]), cfg)
    (grad,) = torch.autograd.grad(loss, logp)
    return float(loss.detach()), float(grad), {k: float(v) for k, v in stats.items()}


@pytest.mark.parametrize(
    "r, adv, value, grad_autograd, grad_detached",
    [
        # L = −A·clip(r, 0, 1.2). autograd: dL/dℓ = −A·r below 1.2, 0 above; detached: −A·φ(r)
        (1.1, 2.0, -2.2, -2.2, -2.2),  # inside: φ = r
        (1.5, 2.0, -2.4, 0.0, -2.4),  # above, A > 0: φ = 1.2 (PPO: same value, no gradient)
        (1.5, -1.0, 1.2, 0.0, 1.2),  # above, A < 0: φ = 1.2 (PPO: unclipped, value 1.5, gradient 1.5)
        (0.5, -1.0, 0.5, 0.5, 0.5),  # below 1−ε, A < 0: no lower clip (PPO: clipped at 0.8, no gradient)
        (0.5, 2.0, -1.0, -1.0, -1.0),  # below 1−ε, A > 0: φ = r
    ],
)
def test_grpo_fix_single_token(r, adv, value, grad_autograd, grad_detached):
    for form, expected_grad in ((GradForm.autograd, grad_autograd), (GradForm.detached, grad_detached)):
        loss, grad, stats = _one_token(r, adv, _fix_cfg(form))
        _close(loss, value)
        _close(grad, expected_grad)
        assert stats["clip_frac_high"] == float(r > 1.2)
        assert stats["clip_frac_low"] == stats["dual_clip_frac"] == 0.0


def test_grpo_fix_uses_clip_high_only():
    # ε_low = 0.1, ε_high = 0.3: r = 0.85 < 0.9 is not clipped (lower bound is 0); r = 1.35 > 1.3 is
    loss, grad, _ = _one_token(0.85, -2.0, _fix_cfg(GradForm.autograd, clip=ClipConfig(low=0.1, high=0.3)))
    _close(loss, 1.7)
    _close(grad, 1.7)
    loss, grad, _ = _one_token(1.35, -2.0, _fix_cfg(GradForm.autograd, clip=ClipConfig(low=0.1, high=0.3)))
    _close(loss, 2.6)
    assert grad == 0.0


@pytest.mark.parametrize("form, row1_grad", [(GradForm.autograd, 0.0), (GradForm.detached, 1.2 / 4)])
def test_grpo_fix_on_gspo_sequence_ratio(form, row1_grad):
    # GSPO token form: row 0 (3 tokens) s_0 = e^0.1 = 1.1051709, A = 1; row 1 (2 tokens) s_1 = e^0.3 = 1.3498588 > 1.2,
    # A = −1. seq_mean_token_mean over 2 rows: row 0 gradient −s_0/(3·2) = −0.1841952 per token;
    # row 1: autograd 0 (φ flat above 1.2; PPO-GSPO would give s_1/4), detached −φ·A/(2·2) = 0.3.
    # L = (−s_0 + 1.2)/2 = 0.0474146 either way
    mask = _t([[1, 1, 1], [1, 1, 0]])
    old = _t([[-1.0, -2.0, -0.5], [-0.7, -1.2, -3.0]])
    logp = (old + _t([[0.3, -0.1, 0.1], [0.2, 0.4, 5.0]])).requires_grad_(True)
    cfg = _fix_cfg(form, loss="gspo", agg=LossAgg.seq_mean_token_mean)
    loss, stats = policy_loss(logp, old, _t([1.0, -1.0]), mask, cfg)
    (grad,) = torch.autograd.grad(loss, logp)
    s0 = math.exp(0.1)
    _close(grad, [[-s0 / 6] * 3, [row1_grad, row1_grad, 0.0]])
    _close(loss, (-s0 + 1.2) / 2)
    _close(stats["clip_frac_high"], 2 / 5)


# ================================================================ shared-token cancellation (Eq. 82)
def _shared_token_grad_sum(cfg, r_star: float) -> float:
    """A group of G = 4 whose first token is the same (context, token) pair with ratio r* in every
    response: its parameter gradient is g*·Σ_i ∂L/∂ℓ_{i,0}, so the sum is what must vanish."""
    ids = torch.zeros(4, dtype=torch.long)
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), ids).double()  # ΣÂ = 0
    old = torch.zeros(4, 3, dtype=F64)
    delta = _t(
        [
            [math.log(r_star), 0.05, -0.1],
            [math.log(r_star), 0.2, 0.1],
            [math.log(r_star), -0.3, 0.0],
            [math.log(r_star), 0.1, 0.4],
        ]
    )
    logp = (old + delta).requires_grad_(True)
    loss, _ = policy_loss(logp, old, adv, torch.ones(4, 3, dtype=F64), cfg)
    (grad,) = torch.autograd.grad(loss, logp)
    return float(grad[:, 0].sum())


@pytest.mark.parametrize("r_star", [1.5, 1.25, 0.5, 1.0])
@pytest.mark.parametrize("form", list(GradForm))
def test_grpo_fix_cancels_shared_tokens(r_star, form):
    # φ(r*)·ΣÂ = 0 for any r*, both gradient forms
    _close(_shared_token_grad_sum(_fix_cfg(form, clip=ClipConfig(low=0.2, high=0.28)), r_star), 0.0, tol=1e-7)


@pytest.mark.parametrize("r_star", [1.5, 0.5])
def test_ppo_clip_does_not_cancel_shared_tokens(r_star):
    # rewards [1, 0, 0, 0]: centred [0.75, −0.25 ×3], unbiased std 0.5 → Â = [1.5, −0.5, −0.5, −0.5].
    # r* = 1.5 > 1.28: the A > 0 row is clipped (no gradient), the A < 0 rows are not → sum
    # = −Σ_{A<0} Â_i r*/N = 1.5·1.5/12 = 0.1875. r* = 0.5 < 0.8: the A < 0 rows are clipped,
    # the A > 0 row is not → −1.5·0.5/12 = −0.0625. GRPO-fix gives 0 in both cases (test above).
    cfg = AlgorithmConfig(loss="ppo_clip", loss_agg=LossAgg.token_mean, clip=ClipConfig(low=0.2, high=0.28))
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.zeros(4, dtype=torch.long)).double()
    side = adv < 0 if r_star > 1 else adv > 0
    total = _shared_token_grad_sum(cfg, r_star)
    _close(total, {1.5: 0.1875, 0.5: -0.0625}[r_star], tol=1e-6)
    _close(total, float(-(adv[side].sum()) * r_star / 12), tol=1e-6)  # N = 12 tokens


def test_ppo_clip_cancels_inside_the_clip_range():
    # r* = 1.25 ∈ [0.8, 1.28]: no clip is active, every row has gradient −Â_i r*/N, which sums to 0
    cfg = AlgorithmConfig(loss="ppo_clip", loss_agg=LossAgg.token_mean, clip=ClipConfig(low=0.2, high=0.28))
    _close(_shared_token_grad_sum(cfg, 1.25), 0.0, tol=1e-7)
