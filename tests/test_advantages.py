"""Group-relative advantages (docs/algorithms.md §1.1).

A_i = (R_i − mean_g R) / (std_g R + eps), broadcast to tokens; knobs: std normalization on/off
(Dr.GRPO), unbiased vs biased std, group-level vs batch-level scaling. Expected values are
worked out by hand in the comments, or by a plain-Python loop written here.
"""

import math

import pytest
import torch

from trainer.advantages import group_advantages

EPS = 1e-6


def _adv(rewards, ids, **kw):
    return group_advantages(torch.tensor(rewards, dtype=torch.float64), torch.tensor(ids), **kw)


def _close(actual: torch.Tensor, expected, tol=1e-6):
    torch.testing.assert_close(actual.double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=tol)


# ---------------------------------------------------------------- one group, by hand
def test_unbiased_std_is_the_default():
    # mean = 0.5; centred = ±0.5; Σ centred² = 4·0.25 = 1; unbiased var = 1/(4−1) = 1/3
    # std = sqrt(1/3) = 0.5773503; A = ±0.5 / (0.5773503 + 1e-6)
    a = 0.5 / (math.sqrt(1 / 3) + EPS)  # = 0.8660239
    _close(_adv([1.0, 0.0, 0.0, 1.0], [0, 0, 0, 0]), [a, -a, -a, a])


def test_biased_std():
    # population var = 1/4 → std = 0.5; A = ±0.5 / (0.5 + 1e-6) ≈ ±1
    a = 0.5 / (0.5 + EPS)  # = 0.999998
    out = _adv([1.0, 0.0, 0.0, 1.0], [0, 0, 0, 0], unbiased=False)
    _close(out, [a, -a, -a, a])
    assert out.abs().max() < 1.0  # eps is added to the std, never subtracted


def test_no_std_normalization_is_mean_centering_only():
    # Dr.GRPO: A = R − mean = ±0.5, no division at all
    _close(_adv([1.0, 0.0, 0.0, 1.0], [0, 0, 0, 0], std_normalize=False), [0.5, -0.5, -0.5, 0.5])


def test_scalar_rewards_one_group():
    # R = [2, 4, 9]: mean = 5; centred = [−3, −1, 4]; Σ² = 9+1+16 = 26; unbiased var = 13 → std = 3.6055513
    s = math.sqrt(13.0)
    _close(_adv([2.0, 4.0, 9.0], [0, 0, 0]), [-3 / (s + EPS), -1 / (s + EPS), 4 / (s + EPS)])


def test_eps_is_the_configured_one():
    # R = [1, 0]: mean 0.5; unbiased std = sqrt((0.25+0.25)/1) = 0.7071068; eps = 0.5
    d = math.sqrt(0.5) + 0.5
    _close(_adv([1.0, 0.0], [0, 0], eps=0.5), [0.5 / d, -0.5 / d])


# ---------------------------------------------------------------- several groups
def test_interleaved_groups_with_arbitrary_ids():
    # ids 3 and 7 alternate: group 3 = R[0,2,4,6] = [1,0,0,0], group 7 = R[1,3,5,7] = [5,5,1,1]
    # group 3: mean 0.25; centred [0.75, −0.25, −0.25, −0.25]; Σ² = 0.5625+3·0.0625 = 0.75;
    #          unbiased var = 0.25 → std 0.5
    # group 7: mean 3; centred [2, 2, −2, −2]; Σ² = 16; unbiased var = 16/3 → std 2.3094011
    s7 = math.sqrt(16 / 3)
    expected = [
        0.75 / (0.5 + EPS), 2 / (s7 + EPS),
        -0.25 / (0.5 + EPS), 2 / (s7 + EPS),
        -0.25 / (0.5 + EPS), -2 / (s7 + EPS),
        -0.25 / (0.5 + EPS), -2 / (s7 + EPS),
    ]
    _close(_adv([1.0, 5.0, 0.0, 5.0, 0.0, 1.0, 0.0, 1.0], [3, 7, 3, 7, 3, 7, 3, 7]), expected)


def test_groups_are_independent_of_each_other():
    # Shifting every reward of group 7 by +100 changes nothing (each group is centred on its own mean).
    base = _adv([1.0, 5.0, 0.0, 5.0, 0.0, 1.0], [3, 7, 3, 7, 3, 7])
    shifted = _adv([1.0, 105.0, 0.0, 105.0, 0.0, 101.0], [3, 7, 3, 7, 3, 7])
    _close(shifted, base.tolist())


def test_identical_rewards_give_exactly_zero_not_nan():
    # group 0 all 1 (no signal), group 1 all 0; group 2 mixed: [1, 0] → ±0.5/(sqrt(0.5)+eps)
    out = _adv([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0, 0, 0, 1, 1, 1, 2, 2])
    assert torch.isfinite(out).all()
    assert (out[:6] == 0).all()  # exactly zero
    a = 0.5 / (math.sqrt(0.5) + EPS)
    _close(out[6:], [a, -a])


def test_identical_rewards_zero_for_every_knob_combination():
    for std_normalize in (True, False):
        for unbiased in (True, False):
            for scale in ("group", "batch"):
                out = _adv([0.3, 0.3, 0.3], [1, 1, 1], std_normalize=std_normalize, unbiased=unbiased, scale=scale)
                assert torch.isfinite(out).all() and (out == 0).all(), (std_normalize, unbiased, scale)


def test_single_response_group_is_zero():
    # a group of one: centred = 0, whatever the std convention
    out = _adv([1.0, 0.0, 1.0], [0, 1, 1])
    assert out[0] == 0 and torch.isfinite(out).all()


# ---------------------------------------------------------------- batch-level scaling
def test_batch_scale_divides_by_whole_batch_std():
    # R = [1, 0, 0, 0 | 1, 1, 1, 0], groups 0 and 1.
    # centring is still per group: group 0 mean 0.25 → [0.75, −0.25, −0.25, −0.25];
    #                              group 1 mean 0.75 → [0.25, 0.25, 0.25, −0.75]
    # batch: mean 0.5, Σ(R−0.5)² = 8·0.25 = 2; unbiased var = 2/7 → std = 0.5345225
    s = math.sqrt(2 / 7)
    d = s + EPS
    expected = [0.75 / d, -0.25 / d, -0.25 / d, -0.25 / d, 0.25 / d, 0.25 / d, 0.25 / d, -0.75 / d]
    _close(_adv([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0], [0] * 4 + [1] * 4, scale="batch"), expected)


def test_batch_scale_biased_std():
    # same batch, population var = 2/8 = 0.25 → std 0.5
    d = 0.5 + EPS
    expected = [0.75 / d, -0.25 / d, -0.25 / d, -0.25 / d, 0.25 / d, 0.25 / d, 0.25 / d, -0.75 / d]
    out = _adv([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0], [0] * 4 + [1] * 4, scale="batch", unbiased=False)
    _close(out, expected)


def test_unknown_scale_is_an_error():
    with pytest.raises(ValueError, match="scale"):
        _adv([1.0, 0.0], [0, 0], scale="prompt")


# ---------------------------------------------------------------- brute-force reference
def _reference(rewards: list[float], ids: list[int], std_normalize: bool, unbiased: bool, scale: str, eps: float):
    """Straight loop over responses, one group at a time."""
    n = len(rewards)
    out = []
    for i in range(n):
        members = [rewards[j] for j in range(n) if ids[j] == ids[i]]
        mean = sum(members) / len(members)
        centred = rewards[i] - mean
        if not std_normalize:
            out.append(centred)
            continue
        pool = members if scale == "group" else rewards
        pool_mean = sum(pool) / len(pool)
        ss = sum((r - pool_mean) ** 2 for r in pool)
        dof = max(len(pool) - 1, 1) if unbiased else len(pool)
        out.append(centred / (math.sqrt(ss / dof) + eps))
    return out


@pytest.mark.parametrize("std_normalize", [True, False])
@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("scale", ["group", "batch"])
def test_matches_brute_force_loop(std_normalize, unbiased, scale):
    torch.manual_seed(1234)
    for trial in range(20):
        n_groups = int(torch.randint(1, 6, ()))
        g = int(torch.randint(2, 9, ()))
        ids = (torch.randperm(50)[:n_groups] + 10).repeat_interleave(g)  # arbitrary, non-contiguous ids
        ids = ids[torch.randperm(ids.numel())]  # groups interleaved in any order
        if trial % 2:
            rewards = torch.randint(0, 2, (ids.numel(),)).double()  # binary rewards (some zero-variance groups)
        else:
            rewards = torch.randn(ids.numel(), dtype=torch.float64) * 3 + 1
        out = group_advantages(rewards, ids, std_normalize, 1e-6, unbiased=unbiased, scale=scale)
        ref = _reference(rewards.tolist(), ids.tolist(), std_normalize, unbiased, scale, 1e-6)
        assert out.shape == rewards.shape
        torch.testing.assert_close(out.double(), torch.tensor(ref, dtype=torch.float64), rtol=0, atol=1e-6)


def test_advantages_sum_to_zero_within_each_group():
    torch.manual_seed(7)
    rewards = torch.rand(24, dtype=torch.float64)
    ids = torch.tensor([5, 9, 2] * 8)
    out = group_advantages(rewards, ids).double()
    for g in (5, 9, 2):
        assert abs(float(out[ids == g].sum())) < 1e-5


def test_identical_rewards_zero_even_with_eps_zero():
    # The docstring promises "a group of identical rewards gets advantage 0, never NaN";
    # algorithm.advantage.eps has bound ge=0.0, so eps=0 is a valid config.
    # group 0 = [1, 1]: centred [0, 0], std 0 → expected 0; group 1 = [0, 1] → ±0.5/sqrt(0.5) = ±0.7071068
    out = _adv([1.0, 1.0, 0.0, 1.0], [0, 0, 1, 1], eps=0.0)
    a = 0.5 / math.sqrt(0.5)
    _close(out, [0.0, 0.0, -a, a])
