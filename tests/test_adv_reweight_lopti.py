"""Advantage Reweighting and the Lopti split (arXiv 2505.12929, Eq. 4 and §4; docs/algorithms.md §2-§3).

Expected values are worked out by hand in the comments; properties are checked with hypothesis.
"""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.variants.adv_reweight import advantage_reweight
from trainer.variants.lopti import lopti_masks


def _close(actual: torch.Tensor, expected, tol=1e-6):
    torch.testing.assert_close(actual.double(), torch.as_tensor(expected, dtype=torch.float64), rtol=0, atol=tol)


def _logp(probs):
    return torch.tensor(probs, dtype=torch.float64).log().float()


# ---------------------------------------------------------------- AR (Lopti paper Eq. 4)
def test_ar_hand_values_both_signs():
    # α = 0.2: weight = 0.2·π + 0.8 → π=0.5: 0.9, π=0.25: 0.85, π=1: 1.0, π=0.1: 0.82
    # A = [2, −1] broadcast: row 0 → [1.8, 1.7]; row 1 → [−1.0, −0.82]
    out = advantage_reweight(torch.tensor([2.0, -1.0]), _logp([[0.5, 0.25], [1.0, 0.1]]), 0.2)
    assert out.shape == (2, 2)
    _close(out, [[1.8, 1.7], [-1.0, -0.82]])


def test_ar_per_token_advantages():
    # A [B,T] = [[1, −3]]; α = 0.5, π = [0.2, 0.6] → weights [0.6, 0.8] → [0.6, −2.4]
    out = advantage_reweight(torch.tensor([[1.0, -3.0]]), _logp([[0.2, 0.6]]), 0.5)
    _close(out, [[0.6, -2.4]])


def test_ar_alpha_one_is_probability_times_advantage():
    out = advantage_reweight(torch.tensor([4.0]), _logp([[0.3, 0.7]]), 1.0)
    _close(out, [[1.2, 2.8]])


def test_ar_alpha_zero_is_bitwise_identity():
    adv = torch.randn(3, generator=torch.Generator().manual_seed(0))
    old_logp = -torch.rand(3, 4, generator=torch.Generator().manual_seed(1)) * 5
    old_logp[0, -1] = -math.inf  # a padding value must not matter either
    assert torch.equal(advantage_reweight(adv, old_logp, 0.0), adv.unsqueeze(-1).expand(3, 4))
    adv_bt = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(advantage_reweight(adv_bt, old_logp, 0.0), adv_bt)


def test_ar_no_gradient_into_old_logp():
    old_logp = _logp([[0.5, 0.25]]).requires_grad_(True)
    adv = torch.tensor([1.0], requires_grad=True)
    out = advantage_reweight(adv, old_logp, 0.3)
    out.sum().backward()
    assert old_logp.grad is None
    # dÂ/dA = Σ_t weight_t = (0.3·0.5 + 0.7) + (0.3·0.25 + 0.7) = 0.85 + 0.775
    _close(adv.grad, [1.625])


@settings(max_examples=50, deadline=None)
@given(
    alpha=st.floats(0.0, 1.0),
    adv=st.lists(st.floats(-10, 10), min_size=1, max_size=4),
    prob=st.floats(1e-6, 1.0),
)
def test_ar_property_interpolates_and_never_flips_or_grows(alpha, adv, prob):
    a = torch.tensor(adv, dtype=torch.float64)
    lp = torch.full((len(adv), 3), math.log(prob), dtype=torch.float64)
    out = advantage_reweight(a, lp, alpha)
    full = a.unsqueeze(-1).expand(-1, 3)
    # linear in α between A (α=0) and π·A (α=1)
    torch.testing.assert_close(out, (1 - alpha) * full + alpha * prob * full, rtol=1e-12, atol=1e-12)
    assert bool((out * full >= 0).all())  # sign kept
    assert bool((out.abs() <= full.abs() + 1e-12).all())  # weight ≤ 1


# ---------------------------------------------------------------- Lopti split (arXiv 2505.12929)
def test_lopti_hand_values_with_token_at_eta_and_padding():
    probs = [[0.1, 0.5, 0.9, 0.3], [0.6, 0.49, 0.7, 0.2]]
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    old_logp = _logp(probs)
    assert old_logp[0, 1].exp().item() == 0.5  # the token sits exactly at η in float32
    low, high = lopti_masks(old_logp, mask, 0.5)
    # 0.5 is high (π ≥ η); the padded 0.3 and 0.2 are not low, the padded 0.7 is not high
    assert low.tolist() == [[True, False, False, False], [False, True, False, False]]
    assert high.tolist() == [[False, True, True, False], [True, False, False, False]]


def test_lopti_token_exactly_at_other_eta_is_high():
    old_logp = _logp([[0.25, 0.2499, 0.2501]])
    assert old_logp[0, 0].exp().item() == 0.25
    low, high = lopti_masks(old_logp, torch.ones(1, 3), 0.25)
    assert low.tolist() == [[False, True, False]]
    assert high.tolist() == [[True, False, True]]


@settings(max_examples=50, deadline=None)
@given(
    probs=st.lists(st.floats(1e-6, 1.0), min_size=6, max_size=6),
    bits=st.lists(st.booleans(), min_size=6, max_size=6),
    eta1=st.floats(0.01, 0.99),
    eta2=st.floats(0.01, 0.99),
)
def test_lopti_property_partition_of_mask_and_monotone_in_eta(probs, bits, eta1, eta2):
    old_logp = torch.tensor(probs, dtype=torch.float64).log().reshape(2, 3)
    mask = torch.tensor(bits).reshape(2, 3)
    lo1, hi1 = lopti_masks(old_logp, mask, min(eta1, eta2))
    lo2, hi2 = lopti_masks(old_logp, mask, max(eta1, eta2))
    for lo, hi in ((lo1, hi1), (lo2, hi2)):
        assert torch.equal(lo | hi, mask) and not bool((lo & hi).any())
    assert not bool((lo1 & ~lo2).any())  # a larger η only moves tokens from high to low
