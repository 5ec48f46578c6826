"""Update diagnostics (docs/algorithms.md §7): LLD (NTHR Eq. 2), token flips (cancellation App. C,
Eq. 16), π_old-bin statistics (Lopti Fig. 1/3, Prop. 4.2) and DFPO's Jitter₂ (Eq. 20).

Expected values are worked out by hand in the comments. Padded positions hold inf/nan on purpose:
padding must never count. Undefined ratios are omitted from the dict, never NaN.
"""

import math

import pytest
import torch

from trainer.diagnostics import bin_ranges, jitter2, lld_stats, prob_bin_stats, token_flip_stats

INF, NAN = float("inf"), float("nan")


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def _mask(lengths, T):
    return torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def _approx(out: dict, expected: dict, tol=1e-12):
    for k, v in expected.items():
        assert k in out, f"missing {k}; have {sorted(out)}"
        assert out[k] == pytest.approx(v, abs=tol), k


def _finite(out: dict):
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values()), out


# ---------------------------------------------------------------- LLD (NTHR Eq. 2)
# Groups (ids deliberately non-contiguous): 7 = {r0 ✓ len 2, r1 ✓ len 1, r2 ✗},
# 3 = {r3 ✓} (all correct: excluded), 9 = {r4 ✗, r5 ✓ len 3}.
LLD_OLD = _t([
    [-1.0, -2.0, INF],
    [-1.0, NAN, INF],
    [-3.0, -3.0, -3.0],
    [-1.0, -1.0, -1.0],
    [-2.0, -2.0, NAN],
    [-1.0, -1.0, -1.0],
])
LLD_NEW = _t([
    [-0.5, -1.0, -INF],   # r0: Σ Δ = 0.5 + 1.0 = 1.5; per token 0.75
    [-1.3, INF, NAN],     # r1: Σ Δ = −0.3;            per token −0.3
    [2.0, 2.0, 2.0],      # r2 incorrect: +15, must not count
    [-11.0, -1.0, -1.0],  # r3 all-correct group: −10, must not count
    [-9.0, -9.0, INF],    # r4 incorrect
    [-1.1, -1.1, -0.9],   # r5: Σ Δ = −0.1 − 0.1 + 0.1 = −0.1; per token −1/30
])
LLD_MASK = _mask([2, 1, 3, 3, 2, 3], 3)
LLD_CORRECT = torch.tensor([True, True, False, True, False, True])
LLD_GROUPS = torch.tensor([7, 7, 7, 3, 9, 9])


def test_lld_by_hand():
    # Δ(7) = (1.5 − 0.3)/2 = 0.6 (not lazy); Δ(9) = −0.1 (lazy) → mean 0.25, lazy 1/2
    # per token: Δ̄(7) = (0.75 − 0.3)/2 = 0.225; Δ̄(9) = −1/30 → mean (0.225 − 1/30)/2
    out = lld_stats(LLD_OLD, LLD_NEW, LLD_MASK, LLD_CORRECT, LLD_GROUPS)
    _approx(out, {
        "diag/lld_prompts": 2.0,
        "diag/lld_mean": 0.25,
        "diag/lld_lazy_frac": 0.5,
        "diag/lld_mean_per_token": (0.225 - 1 / 30) / 2,
        "diag/lld_lazy_frac_per_token": 0.5,
    })
    _finite(out)


def test_lld_is_sequence_loglik_not_length_normalized():
    # Eq. 2 uses ln π(y|x) = Σ_t: correct a (len 1) gains +1, correct b (len 4) loses −2.
    # Δ = (1 − 2)/2 = −0.5 → lazy; per token (1/1 − 2/4)/2 = 0.25 → not lazy.
    old = torch.zeros(3, 4, dtype=torch.float64)
    new = _t([[1.0, 0, 0, 0], [-0.5, -0.5, -0.5, -0.5], [0, 0, 0, 0]])
    out = lld_stats(old, new, _mask([1, 4, 4], 4), torch.tensor([True, True, False]), torch.tensor([0, 0, 0]))
    _approx(out, {
        "diag/lld_mean": -0.5, "diag/lld_lazy_frac": 1.0,
        "diag/lld_mean_per_token": 0.25, "diag/lld_lazy_frac_per_token": 0.0,
    })


def test_lld_no_change_is_zero_and_lazy():
    # Δ = 0 everywhere; Δ ≤ 0 counts as lazy (Eq. 3 with ε = 0)
    out = lld_stats(LLD_OLD, LLD_OLD.clone(), LLD_MASK, LLD_CORRECT, LLD_GROUPS)
    _approx(out, {"diag/lld_prompts": 2.0, "diag/lld_mean": 0.0, "diag/lld_lazy_frac": 1.0,
                  "diag/lld_mean_per_token": 0.0, "diag/lld_lazy_frac_per_token": 1.0})


def test_lld_excludes_non_mixed_groups():
    # only groups 7 (all ✗) and 3 (all ✓): nothing measured, means omitted (not NaN, not 0)
    correct = torch.tensor([False, False, False, True, True, True])
    groups = torch.tensor([7, 7, 7, 3, 3, 3])
    out = lld_stats(LLD_OLD, LLD_NEW, LLD_MASK, correct, groups)
    assert out == {"diag/lld_prompts": 0.0}


def test_lld_changing_non_mixed_groups_changes_nothing():
    new = LLD_NEW.clone()
    new[3] = 100.0  # the all-correct group's response
    new[2] = -100.0  # an incorrect response of a mixed group
    assert lld_stats(LLD_OLD, new, LLD_MASK, LLD_CORRECT, LLD_GROUPS) == \
        lld_stats(LLD_OLD, LLD_NEW, LLD_MASK, LLD_CORRECT, LLD_GROUPS)


def test_lld_rejects_non_bool_correct():
    with pytest.raises(ValueError, match="bool"):
        lld_stats(LLD_OLD, LLD_NEW, LLD_MASK, LLD_CORRECT.double(), LLD_GROUPS)


# ---------------------------------------------------------------- token flips (cancellation)
# r0: A = +1, Δ = [+0.2, −0.1, 0, +0.05]; r1: A = −1, Δ = [+0.3, −0.2, −0.4, pad];
# r2: A = 0, Δ = [+0.1, +0.1, pad, pad]. old = 0 on response tokens, so Δ = new exactly.
FLIP_OLD = _t([[0, 0, 0, 0], [0, 0, 0, INF], [0, 0, NAN, -INF]])
FLIP_NEW = _t([[0.2, -0.1, 0.0, 0.05], [0.3, -0.2, -0.4, NAN], [0.1, 0.1, INF, 5.0]])
FLIP_MASK = _mask([4, 3, 2], 4)
FLIP_ADV = _t([1.0, -1.0, 0.0])


def test_token_flips_by_hand_threshold_zero():
    # pos (r0): boost {.2, .05} = 2/4, suppress {−.1} = 1/4
    # neg (r1): boost {.3} = 1/3, suppress {−.2, −.4} = 2/3
    # all 9 tokens: boost 2 + 1 + 2 = 5/9, suppress 1 + 2 = 3/9
    # against sign: pos suppressed 1 + neg boosted 1 = 2 of 7 signed tokens
    out = token_flip_stats(FLIP_OLD, FLIP_NEW, FLIP_MASK, FLIP_ADV)
    _approx(out, {
        "diag/flip_pos_tokens": 4.0, "diag/flip_neg_tokens": 3.0, "diag/flip_all_tokens": 9.0,
        "diag/flip_pos_boost_frac": 0.5, "diag/flip_pos_suppress_frac": 0.25,
        "diag/flip_neg_boost_frac": 1 / 3, "diag/flip_neg_suppress_frac": 2 / 3,
        "diag/flip_all_boost_frac": 5 / 9, "diag/flip_all_suppress_frac": 3 / 9,
        "diag/flip_against_sign_frac": 2 / 7,
    })
    _finite(out)


def test_token_flips_threshold_is_strict():
    # τ = 0.1: boost needs Δ > 0.1, suppress Δ < −0.1 (±0.1 itself is stable)
    # pos: boost {.2} = 1/4, suppress {} = 0; neg: boost {.3} = 1/3, suppress {−.2, −.4} = 2/3
    # r2's +0.1s are stable → all: boost 2/9, suppress 2/9
    out = token_flip_stats(FLIP_OLD, FLIP_NEW, FLIP_MASK, FLIP_ADV, threshold=0.1)
    _approx(out, {
        "diag/flip_pos_boost_frac": 0.25, "diag/flip_pos_suppress_frac": 0.0,
        "diag/flip_neg_boost_frac": 1 / 3, "diag/flip_neg_suppress_frac": 2 / 3,
        "diag/flip_all_boost_frac": 2 / 9, "diag/flip_all_suppress_frac": 2 / 9,
        "diag/flip_against_sign_frac": 1 / 7,
    })


def test_token_flips_token_level_advantages_split_by_token_sign():
    # one response, token advantages [+, +, −, 0]; Δ = [+.2, −.1, +.3, −.5]
    # pos: boost 1/2, suppress 1/2; neg: boost 1/1; the A = 0 token counts only in "all"
    old = torch.zeros(1, 4, dtype=torch.float64)
    new = _t([[0.2, -0.1, 0.3, -0.5]])
    adv = _t([[0.5, 2.0, -1.0, 0.0]])
    out = token_flip_stats(old, new, _mask([4], 4), adv)
    _approx(out, {
        "diag/flip_pos_tokens": 2.0, "diag/flip_neg_tokens": 1.0, "diag/flip_all_tokens": 4.0,
        "diag/flip_pos_boost_frac": 0.5, "diag/flip_pos_suppress_frac": 0.5,
        "diag/flip_neg_boost_frac": 1.0, "diag/flip_neg_suppress_frac": 0.0,
        "diag/flip_all_boost_frac": 0.5, "diag/flip_all_suppress_frac": 0.5,
    })


def test_no_change_means_no_flips():
    out = token_flip_stats(FLIP_OLD, FLIP_OLD.clone(), FLIP_MASK, FLIP_ADV)
    assert all(out[k] == 0.0 for k in out if k.endswith("_frac")), out
    assert out["diag/flip_all_tokens"] == 9.0


def test_raising_every_token_is_all_boosts():
    out = token_flip_stats(FLIP_OLD, FLIP_OLD + 0.01, FLIP_MASK, FLIP_ADV)
    for s in ("pos", "neg", "all"):
        assert out[f"diag/flip_{s}_boost_frac"] == 1.0
        assert out[f"diag/flip_{s}_suppress_frac"] == 0.0
    assert out["diag/flip_against_sign_frac"] == 3 / 7  # the 3 negative-rollout tokens


def test_flip_split_without_tokens_is_omitted():
    # every advantage 0: pos/neg splits are empty → their ratios absent, counts 0
    out = token_flip_stats(FLIP_OLD, FLIP_NEW, FLIP_MASK, torch.zeros(3))
    assert out["diag/flip_pos_tokens"] == 0.0 and out["diag/flip_neg_tokens"] == 0.0
    assert not any(k.startswith(("diag/flip_pos_b", "diag/flip_neg_b", "diag/flip_against")) for k in out)
    assert "diag/flip_all_boost_frac" in out
    _finite(out)


def test_flip_rejects_negative_threshold():
    with pytest.raises(ValueError, match="threshold"):
        token_flip_stats(FLIP_OLD, FLIP_NEW, FLIP_MASK, FLIP_ADV, threshold=-0.1)


# ---------------------------------------------------------------- π_old bins (Lopti)
# edges [.25, .5, .75] → bins [0,.25) [.25,.5) [.5,.75) [.75,1]; A = [+2, −1]
# r0: π_old [.1, .6, .9] → [.2, .5, .95]   bins 0, 2, 3
# r1: π_old [.2, .8, pad] → [.1, .85]      bins 0, 3
P_OLD = _t([[0.1, 0.6, 0.9], [0.2, 0.8, 1.0]])
P_NEW = _t([[0.2, 0.5, 0.95], [0.1, 0.85, 1.0]])
BIN_MASK = _mask([3, 2], 3)
BIN_ADV = _t([2.0, -1.0])
EDGES = [0.25, 0.5, 0.75]


def _padded_logs():
    old, new = P_OLD.log(), P_NEW.log()
    old[1, 2], new[1, 2] = INF, NAN
    return old, new


def test_prob_bins_by_hand():
    old, new = _padded_logs()
    out = prob_bin_stats(old, new, BIN_MASK, BIN_ADV, EDGES)
    _approx(out, {
        # bin0: r0t0 (A=2, .1→.2 up), r1t0 (A=−1, .2→.1 down)
        # |A| (2+1)/2; (1−π)|A| = (.9·2 + .8·1)/2 = 1.3; Δπ (.1 − .1)/2 = 0
        "diag/bin0_tokens": 2.0, "diag/bin0_token_frac": 0.4, "diag/bin0_abs_adv": 1.5,
        "diag/bin0_grad_proxy": 1.3, "diag/bin0_dprob": 0.0,
        "diag/bin0_pos_tokens": 1.0, "diag/bin0_neg_tokens": 1.0,
        "diag/bin0_pos_right_frac": 1.0, "diag/bin0_neg_right_frac": 1.0,
        # bin1: empty
        "diag/bin1_tokens": 0.0, "diag/bin1_token_frac": 0.0,
        "diag/bin1_pos_tokens": 0.0, "diag/bin1_neg_tokens": 0.0,
        # bin2: r0t1 (A=2, .6→.5 down): (1−.6)·2 = .8, Δπ −.1, wrong direction
        "diag/bin2_tokens": 1.0, "diag/bin2_token_frac": 0.2, "diag/bin2_abs_adv": 2.0,
        "diag/bin2_grad_proxy": 0.8, "diag/bin2_dprob": -0.1, "diag/bin2_pos_right_frac": 0.0,
        # bin3: r0t2 (A=2, .9→.95 up), r1t1 (A=−1, .8→.85 up: wrong for A<0)
        # (1−π)|A| = (.1·2 + .2·1)/2 = .2; Δπ (.05 + .05)/2 = .05
        "diag/bin3_tokens": 2.0, "diag/bin3_token_frac": 0.4, "diag/bin3_abs_adv": 1.5,
        "diag/bin3_grad_proxy": 0.2, "diag/bin3_dprob": 0.05,
        "diag/bin3_pos_right_frac": 1.0, "diag/bin3_neg_right_frac": 0.0,
    })
    # empty sets are omitted, not NaN
    for k in ("abs_adv", "grad_proxy", "dprob", "pos_right_frac", "neg_right_frac"):
        assert f"diag/bin1_{k}" not in out
    assert "diag/bin2_neg_right_frac" not in out
    _finite(out)


def test_prob_bins_are_left_closed():
    # π exactly on an edge goes to the upper bin (Lopti: π = η is "high")
    old = _t([[0.25, 0.5, 0.75]]).log()
    out = prob_bin_stats(old, old.clone(), _mask([3], 3), _t([1.0]), EDGES)
    assert [out[f"diag/bin{k}_tokens"] for k in range(4)] == [0.0, 1.0, 1.0, 1.0]


def test_no_change_means_no_right_direction():
    old, _ = _padded_logs()
    out = prob_bin_stats(old, old.clone(), BIN_MASK, BIN_ADV, EDGES)
    right = [v for k, v in out.items() if k.endswith("right_frac")]
    assert right and all(v == 0.0 for v in right)
    assert all(v == 0.0 for k, v in out.items() if k.endswith("dprob"))


def test_bin_token_fractions_sum_to_one_and_no_edges_is_one_bin():
    old, new = _padded_logs()
    out = prob_bin_stats(old, new, BIN_MASK, BIN_ADV, EDGES)
    assert sum(out[f"diag/bin{k}_token_frac"] for k in range(4)) == pytest.approx(1.0)
    one = prob_bin_stats(old, new, BIN_MASK, BIN_ADV, [])
    # all 5 tokens: |A| = (2·3 + 1·2)/5 = 1.6; A>0 rose 2 of 3; A<0 fell 1 of 2
    _approx(one, {"diag/bin0_tokens": 5.0, "diag/bin0_token_frac": 1.0, "diag/bin0_abs_adv": 1.6,
                  "diag/bin0_pos_right_frac": 2 / 3, "diag/bin0_neg_right_frac": 0.5})
    assert "diag/bin1_tokens" not in one


def test_bin_ranges_and_bad_edges():
    assert bin_ranges([0.25, 0.5, 0.75]) == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    for bad in ([0.5, 0.25], [0.5, 0.5], [0.0, 0.5], [0.5, 1.0]):
        with pytest.raises(ValueError, match="diagnostics.prob_bins"):
            prob_bin_stats(P_OLD.log(), P_NEW.log(), BIN_MASK, BIN_ADV, bad)


# ---------------------------------------------------------------- padding never counts
def test_padding_garbage_changes_nothing():
    clean_old, clean_new = P_OLD.log(), P_NEW.log()
    dirty_old, dirty_new = _padded_logs()
    adv_tok = _t([[2.0, 2.0, 2.0], [-1.0, -1.0, NAN]])  # garbage advantage at the padded slot
    groups, correct = torch.tensor([0, 0]), torch.tensor([True, False])
    for fn, args in (
        (lld_stats, (correct, groups)),
        (token_flip_stats, (adv_tok,)),
        (prob_bin_stats, (adv_tok, EDGES)),
    ):
        dirty = fn(dirty_old, dirty_new, BIN_MASK, *args)
        _finite(dirty)
        assert dirty == fn(clean_old, clean_new, BIN_MASK, *args), fn.__name__


# ---------------------------------------------------------------- Jitter₂ (DFPO Eq. 20)
def test_jitter2_by_hand():
    # [.2, .5, .4, .6]: |.4 − 1.0 + .2| = .4, |.6 − .8 + .5| = .3 → (.4 + .3)/(4 − 2) = .35
    assert jitter2([0.2, 0.5, 0.4, 0.6]) == pytest.approx(0.35)
    # [0, 1, 0, 1]: |0 − 2 + 0| = 2, |1 − 0 + 1| = 2 → 4/2 = 2
    assert jitter2([0, 1, 0, 1]) == pytest.approx(2.0)


def test_jitter2_constant_and_linear_curves_are_zero():
    assert jitter2([0.7] * 6) == 0.0
    assert jitter2([0.1 * t for t in range(8)]) == pytest.approx(0.0, abs=1e-12)


def test_jitter2_undefined_raises():
    with pytest.raises(ValueError, match="at least 3"):
        jitter2([0.1, 0.2])
    with pytest.raises(ValueError, match="non-finite"):
        jitter2([0.1, NAN, 0.3])
