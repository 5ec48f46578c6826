"""Policy losses, KL estimators and loss aggregation (docs/algorithms.md §1).

Per-token surrogate L = −min(r A, clip(r, 1−ε_low, 1+ε_high) A), optional dual clip c for A < 0;
KL estimators k1/k2/k3; the four aggregations; GSPO's sequence ratio; the entropy bonus.
Every expected number is worked out by hand in the comment next to it.
"""

import math

import pytest
import torch

from trainer.config import AlgorithmConfig, ClipConfig, KLConfig, KLPlacement, LossAgg
from trainer.objectives import Normalizer, aggregate, kl_estimate, policy_loss
from trainer.registry import LOSSES
from trainer.token_loss import sequence_log_ratio

F64 = torch.float64
LOG2 = math.log(2.0)


def _cfg(**kw) -> AlgorithmConfig:
    clip = kw.pop("clip", ClipConfig(low=0.2, high=0.2))
    return AlgorithmConfig(clip=clip, **kw)


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def _close(actual, expected, tol=1e-9):
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64), rtol=0, atol=tol
    )


# ================================================================ aggregation
# values [2,3]; masked-out entries hold 100 so a leak would be obvious.
VALUES = _t([[1.0, 2.0, 100.0], [4.0, 100.0, 100.0]])
MASK = _t([[1, 1, 0], [1, 0, 0]])  # lengths 2 and 1 → 3 tokens, 2 sequences


def test_token_mean():
    # (1 + 2 + 4) / 3 tokens = 7/3
    _close(aggregate(VALUES, MASK, LossAgg.token_mean, Normalizer.of(MASK)), 7 / 3)


def test_seq_mean_token_mean():
    # seq 0: (1+2)/2 = 1.5; seq 1: 4/1 = 4; mean over 2 sequences = 5.5/2 = 2.75
    _close(aggregate(VALUES, MASK, LossAgg.seq_mean_token_mean, Normalizer.of(MASK)), 2.75)


def test_seq_mean_token_sum_norm_divides_by_constant_length():
    # Dr.GRPO: Σ tokens / (n_seqs · max_len) = 7 / (2 · 8) = 0.4375 with max_len = 8
    _close(aggregate(VALUES, MASK, LossAgg.seq_mean_token_sum_norm, Normalizer.of(MASK, 8)), 7 / 16)
    # without max_len the constant is the mask width T = 3: 7 / (2 · 3)
    _close(aggregate(VALUES, MASK, LossAgg.seq_mean_token_sum_norm, Normalizer.of(MASK)), 7 / 6)


def test_seq_mean_token_sum():
    # Σ tokens / n_seqs = 7 / 2
    _close(aggregate(VALUES, MASK, LossAgg.seq_mean_token_sum, Normalizer.of(MASK)), 3.5)


def test_normalizer_counts():
    n = Normalizer.of(MASK, 8)
    assert (n.num_tokens, n.num_seqs, n.max_len) == (3.0, 2.0, 8.0)


def test_fully_masked_row_is_not_a_sequence():
    # Convention of this code (mask_truncated drops whole rows): an all-zero row is not counted
    # in num_seqs. seq_mean_token_mean of [[1,2,·],[·,·,·]] = ((1+2)/2) / 1 = 1.5
    mask = _t([[1, 1, 0], [0, 0, 0]])
    assert Normalizer.of(mask).num_seqs == 1.0
    _close(aggregate(VALUES, mask, LossAgg.seq_mean_token_mean, Normalizer.of(mask)), 1.5)


def test_aggregate_with_an_external_normalizer():
    # A micro-batch's sum is divided by the mini-batch's counts: row 0 alone, mini-batch norm
    # (3 tokens, 2 seqs): token_mean = (1+2)/3 = 1; seq_mean_token_mean = 1.5/2 = 0.75
    norm = Normalizer.of(MASK)
    _close(aggregate(VALUES[:1], MASK[:1], LossAgg.token_mean, norm), 1.0)
    _close(aggregate(VALUES[:1], MASK[:1], LossAgg.seq_mean_token_mean, norm), 0.75)


def test_unknown_aggregation_is_an_error():
    with pytest.raises(ValueError, match="loss aggregation 'sum': must be one of token_mean"):
        aggregate(VALUES, MASK, "sum", Normalizer.of(MASK))


# ================================================================ PPO clip on single tokens
def _one_token(r: float, adv: float, cfg: AlgorithmConfig):
    """Loss, d loss / d logp and stats for one token with ratio r (old logp 0, logp = log r)."""
    logp = torch.tensor([[math.log(r)]], dtype=F64, requires_grad=True)
    loss, stats = policy_loss(logp, torch.zeros(1, 1, dtype=F64), _t([adv]), _t([[1.0]]), cfg)
    (grad,) = torch.autograd.grad(loss, logp)
    return float(loss.detach()), float(grad), {k: float(v) for k, v in stats.items()}


def test_positive_advantage_inside_clip_range():
    # r = 1.1 ∈ [0.8, 1.2], A = 2: L = −rA = −2.2; dL/dℓ = −A·dr/dℓ = −rA = −2.2
    loss, grad, stats = _one_token(1.1, 2.0, _cfg())
    _close(loss, -2.2)
    _close(grad, -2.2)
    assert stats["clip_frac_low"] == stats["clip_frac_high"] == stats["dual_clip_frac"] == 0.0
    _close(stats["ratio_mean"], 1.1)


def test_positive_advantage_above_clip_is_clipped():
    # r = 1.5 > 1.2, A = 2: L = −(1 + 0.2)·2 = −2.4; clip has no gradient
    loss, grad, stats = _one_token(1.5, 2.0, _cfg())
    _close(loss, -2.4)
    assert grad == 0.0
    assert stats["clip_frac_high"] == 1.0 and stats["clip_frac_low"] == 0.0


def test_positive_advantage_below_clip_is_not_clipped():
    # r = 0.5 < 0.8, A = 2: −min(1.0, 1.6) = −1.0 (unclipped branch); gradient −rA = −1
    loss, grad, stats = _one_token(0.5, 2.0, _cfg())
    _close(loss, -1.0)
    _close(grad, -1.0)
    assert stats["clip_frac_low"] == stats["clip_frac_high"] == 0.0


def test_negative_advantage_below_clip_is_clipped():
    # r = 0.5 < 0.8, A = −1: −min(−0.5, −0.8) = 0.8 (clipped at 1 − ε_low); zero gradient
    loss, grad, stats = _one_token(0.5, -1.0, _cfg())
    _close(loss, 0.8)
    assert grad == 0.0
    assert stats["clip_frac_low"] == 1.0 and stats["clip_frac_high"] == 0.0


def test_negative_advantage_above_clip_is_not_clipped():
    # r = 1.5 > 1.2, A = −1: −min(−1.5, −1.2) = 1.5 (unclipped); gradient −rA = +1.5
    loss, grad, stats = _one_token(1.5, -1.0, _cfg())
    _close(loss, 1.5)
    _close(grad, 1.5)
    assert grad != 0.0
    assert stats["clip_frac_low"] == stats["clip_frac_high"] == 0.0


def test_asymmetric_clip_high():
    # ε_low = 0.1, ε_high = 0.3 (clip-higher): r = 1.25 is inside [0.9, 1.3] → L = −1.25·1, grad −1.25
    cfg = _cfg(clip=ClipConfig(low=0.1, high=0.3))
    loss, grad, _ = _one_token(1.25, 1.0, cfg)
    _close(loss, -1.25)
    _close(grad, -1.25)
    # r = 1.35 > 1.3 → L = −1.3·1, no gradient
    loss, grad, stats = _one_token(1.35, 1.0, cfg)
    _close(loss, -1.3)
    assert grad == 0.0 and stats["clip_frac_high"] == 1.0


def test_asymmetric_clip_low():
    cfg = _cfg(clip=ClipConfig(low=0.1, high=0.3))
    # r = 0.95 ≥ 0.9, A = −2: L = 0.95·2 = 1.9, grad −rA = 1.9
    loss, grad, _ = _one_token(0.95, -2.0, cfg)
    _close(loss, 1.9)
    _close(grad, 1.9)
    # r = 0.85 < 0.9, A = −2: L = 0.9·2 = 1.8 (would be unclipped with ε_low = 0.2), no gradient
    loss, grad, stats = _one_token(0.85, -2.0, cfg)
    _close(loss, 1.8)
    assert grad == 0.0 and stats["clip_frac_low"] == 1.0


def test_dual_clip_bounds_negative_advantage_loss():
    # c = 3, A = −1, r = 10: PPO term −min(−10, −1.2) = 10 > c·|A| = 3 → L = 3, no gradient
    cfg = _cfg(clip=ClipConfig(low=0.2, high=0.2, dual=3.0))
    loss, grad, stats = _one_token(10.0, -1.0, cfg)
    _close(loss, 3.0)
    assert grad == 0.0
    assert stats["dual_clip_frac"] == 1.0


def test_dual_clip_inactive_below_bound():
    # c = 3, A = −1, r = 2: PPO term 2 < 3 → unchanged, gradient −rA = 2
    cfg = _cfg(clip=ClipConfig(low=0.2, high=0.2, dual=3.0))
    loss, grad, stats = _one_token(2.0, -1.0, cfg)
    _close(loss, 2.0)
    _close(grad, 2.0)
    assert stats["dual_clip_frac"] == 0.0


def test_dual_clip_inactive_for_positive_advantage():
    # c = 3, A = +1, r = 10: ordinary clip only, L = −1.2 (not −c·A = −3), dual_clip_frac 0
    cfg = _cfg(clip=ClipConfig(low=0.2, high=0.2, dual=3.0))
    loss, grad, stats = _one_token(10.0, 1.0, cfg)
    _close(loss, -1.2)
    assert grad == 0.0
    assert stats["dual_clip_frac"] == 0.0 and stats["clip_frac_high"] == 1.0
    # A = +1, r = 0.01: L = −0.01, gradient −0.01, no dual
    loss, grad, stats = _one_token(0.01, 1.0, cfg)
    _close(loss, -0.01)
    _close(grad, -0.01)
    assert stats["dual_clip_frac"] == 0.0


def test_advantage_per_token_tensor_is_accepted():
    # [B,T] advantages (after token reweighting): r = 1 everywhere → L_t = −A_t;
    # token_mean over mask [[1,1],[1,0]]: −(1 + 2 + 3)/3 = −2
    logp = torch.zeros(2, 2, dtype=F64)
    adv = _t([[1.0, 2.0], [3.0, 50.0]])
    loss, _ = policy_loss(logp, logp, adv, _t([[1, 1], [1, 0]]), _cfg())
    _close(loss, -2.0)


def test_unknown_policy_loss_is_an_error():
    cfg = _cfg()
    cfg.loss = "reinforce"
    with pytest.raises(ValueError, match="algorithm.loss"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), cfg)


# ================================================================ KL estimators
@pytest.mark.parametrize(
    "diff, k1, k2, k3",
    [
        # d = ℓ − ℓ_ref = log 2: k1 = 0.693147; k2 = ½·0.693147² = 0.240227;
        #   k3 = e^{−d} + d − 1 = 0.5 + 0.693147 − 1 = 0.193147
        (LOG2, LOG2, 0.5 * LOG2**2, 0.5 + LOG2 - 1.0),
        # d = −log 2: k1 = −0.693147; k2 = 0.240227; k3 = 2 − 0.693147 − 1 = 0.306853
        (-LOG2, -LOG2, 0.5 * LOG2**2, 2.0 - LOG2 - 1.0),
    ],
)
def test_kl_estimators_by_hand(diff, k1, k2, k3):
    logp = _t([[diff]])
    ref = _t([[0.0]])
    _close(kl_estimate(logp, ref, "k1"), [[k1]])
    _close(kl_estimate(logp, ref, "k2"), [[k2]])
    _close(kl_estimate(logp, ref, "k3"), [[k3]])


def test_kl_estimators_depend_on_the_difference_only():
    # ℓ = 1.5, ℓ_ref = 1.5 − log 2 gives the same k3 as (log 2, 0)
    _close(kl_estimate(_t([1.5]), _t([1.5 - LOG2]), "k3"), [0.5 + LOG2 - 1.0])


def test_k3_is_nonnegative_and_zero_at_equality():
    torch.manual_seed(0)
    logp = torch.randn(64, 16, dtype=F64) * 3
    ref = torch.randn(64, 16, dtype=F64) * 3
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    assert (kl_estimate(logp, logp, "k3") == 0).all()


def test_unknown_kl_estimator_is_an_error():
    with pytest.raises(ValueError, match="estimator"):
        kl_estimate(_t([0.0]), _t([0.0]), "k4")


def _kl_loss(cfg, ref_logp):
    # one token, r = 1 (ℓ = ℓ_old = log 2), A = 1 → PG term = −1
    logp = torch.tensor([[LOG2]], dtype=F64, requires_grad=True)
    loss, stats = policy_loss(logp, _t([[LOG2]]), _t([1.0]), _t([[1.0]]), cfg, ref_logp=ref_logp)
    (grad,) = torch.autograd.grad(loss, logp)
    return float(loss.detach()), float(grad), stats


def test_kl_added_to_loss_with_coef():
    # ℓ − ℓ_ref = log 2, k3 = 0.193147: L = −1 + 0.5·0.193147 = −0.9034264
    # dL/dℓ = −rA + coef·(1 − e^{ℓ_ref−ℓ}) = −1 + 0.5·(1 − 0.5) = −0.75
    cfg = _cfg(kl=KLConfig(coef=0.5, estimator="k3", placement=KLPlacement.loss))
    loss, grad, stats = _kl_loss(cfg, _t([[0.0]]))
    _close(loss, -1.0 + 0.5 * (0.5 + LOG2 - 1.0))
    _close(grad, -0.75)
    _close(stats["kl"], 0.5 + LOG2 - 1.0)


def test_kl_estimator_choice_in_loss():
    # k2 with coef 0.5: L = −1 + 0.5·½·log²2 = −1 + 0.1201133
    cfg = _cfg(kl=KLConfig(coef=0.5, estimator="k2", placement=KLPlacement.loss))
    loss, _, _ = _kl_loss(cfg, _t([[0.0]]))
    _close(loss, -1.0 + 0.25 * LOG2**2)


@pytest.mark.parametrize(
    "coef, placement, with_ref",
    [(0.0, KLPlacement.loss, True), (0.5, KLPlacement.reward, True), (0.5, KLPlacement.loss, False)],
)
def test_kl_not_in_loss(coef, placement, with_ref):
    # coef 0, placement=reward, or no reference log-probs: L = PG term only = −1
    cfg = _cfg(kl=KLConfig(coef=coef, estimator="k3", placement=placement))
    loss, grad, stats = _kl_loss(cfg, _t([[0.0]]) if with_ref else None)
    _close(loss, -1.0)
    _close(grad, -1.0)
    assert "kl" not in stats


# ================================================================ GSPO
# B = 2, T = 3; δ = ℓ − ℓ_old. Row 0 (3 tokens): δ = [0.3, −0.1, 0.1] → mean 0.1 → s_0 = e^0.1 = 1.1051709
# Row 1 (2 tokens, third masked): δ = [0.2, 0.4, (5.0 masked)] → mean 0.3 → s_1 = e^0.3 = 1.3498588
GS_MASK = _t([[1, 1, 1], [1, 1, 0]])
GS_OLD = _t([[-1.0, -2.0, -0.5], [-0.7, -1.2, -3.0]])
GS_DELTA = _t([[0.3, -0.1, 0.1], [0.2, 0.4, 5.0]])
S0, S1 = math.exp(0.1), math.exp(0.3)


def _gspo_logp():
    return (GS_OLD + GS_DELTA).clone().requires_grad_(True)


def test_sequence_log_ratio_is_masked_token_mean():
    _close(sequence_log_ratio(GS_OLD + GS_DELTA, GS_OLD, GS_MASK), [0.1, 0.3])


def test_gspo_token_ratio_is_the_sequence_ratio():
    tok = LOSSES["gspo"].fn(_gspo_logp(), GS_OLD, _t([[1.0] * 3, [-1.0] * 3]), GS_MASK, _cfg(loss="gspo"))
    _close(tok.ratio[0], [S0, S0, S0])
    _close(tok.ratio[1, :2], [S1, S1])


def test_gspo_unclipped_gradient_is_sequence_ratio_times_advantage():
    # A = [1, −1], ε = 0.2: s_0 = 1.105 ∈ [0.8, 1.2]; s_1 = 1.350 > 1.2 but A < 0 → unclipped.
    # seq_mean_token_mean weight of token t of row i: 1 / (|y_i| · n_seqs)
    # dL/dℓ_{0,t} = −s_0·1 / (3·2) = −0.1841952; dL/dℓ_{1,t} = −s_1·(−1) / (2·2) = 0.3374647; masked: 0
    cfg = _cfg(loss="gspo", loss_agg=LossAgg.seq_mean_token_mean)
    logp = _gspo_logp()
    loss, stats = policy_loss(logp, GS_OLD, _t([1.0, -1.0]), GS_MASK, cfg)
    (grad,) = torch.autograd.grad(loss, logp)
    _close(grad, [[-S0 / 6] * 3, [S1 / 4, S1 / 4, 0.0]])
    # L = ((−s_0·1) + (s_1·1)) / 2 = (−1.1051709 + 1.3498588)/2 = 0.1223439
    _close(loss, (-S0 + S1) / 2)
    assert stats["clip_frac_low"] == stats["clip_frac_high"] == 0.0
    # token-mean of the ratio: (3·s_0 + 2·s_1)/5
    _close(stats["ratio_mean"], (3 * S0 + 2 * S1) / 5)


def test_gspo_clips_whole_sequence():
    # A = [1, 1]: s_1 = 1.350 > 1 + 0.2 with A > 0 → every token of row 1 clipped, zero gradient;
    # row 0 unchanged: −s_0/6 per token. L = (−s_0 − 1.2)/2; clip_frac_high = 2 tokens / 5 = 0.4
    cfg = _cfg(loss="gspo", loss_agg=LossAgg.seq_mean_token_mean)
    logp = _gspo_logp()
    loss, stats = policy_loss(logp, GS_OLD, _t([1.0, 1.0]), GS_MASK, cfg)
    (grad,) = torch.autograd.grad(loss, logp)
    _close(grad, [[-S0 / 6] * 3, [0.0, 0.0, 0.0]])
    _close(loss, (-S0 - 1.2) / 2)
    _close(stats["clip_frac_high"], 0.4)


def test_gspo_equals_ppo_clip_at_old_policy():
    # at θ = θ_old every ratio is 1: both losses are −A, same gradient −A·weight
    torch.manual_seed(3)
    old = torch.randn(3, 4, dtype=F64)
    mask = _t([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    adv = _t([0.5, -1.0, 2.0])
    grads = []
    for name in ("ppo_clip", "gspo"):
        logp = old.clone().requires_grad_(True)
        loss, _ = policy_loss(logp, old, adv, mask, _cfg(loss=name, loss_agg=LossAgg.seq_mean_token_mean))
        grads.append(torch.autograd.grad(loss, logp)[0])
    _close(grads[0], grads[1])


# ================================================================ entropy bonus
ENT = _t([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]])  # masked-token mean = (1 + 2 + 3)/3 = 2


def _entropy_loss(coef):
    logp = torch.zeros(2, 3, dtype=F64)
    ent = ENT.clone().requires_grad_(True)
    loss, stats = policy_loss(logp, logp, _t([1.0, -1.0]), MASK, _cfg(entropy_coef=coef), entropy=ent)
    grad = torch.autograd.grad(loss, ent)[0] if loss.requires_grad else None
    return float(loss.detach()), grad, stats


def test_entropy_bonus_lowers_loss_by_coef_times_mean_entropy():
    # r = 1: PG term per token −A → token_mean = (−1 −1 +1)/3 = −1/3
    # with coef 0.1: L = −1/3 − 0.1·2 = −0.5333333; dL/dH = −0.1/3 on response tokens, 0 elsewhere
    base, grad0, stats0 = _entropy_loss(0.0)
    _close(base, -1 / 3)
    assert grad0 is None  # coef 0: the entropy does not enter the loss
    _close(stats0["entropy"], 2.0)  # logged even with coef 0
    loss, grad, stats = _entropy_loss(0.1)
    _close(loss, -1 / 3 - 0.2)
    _close(grad, [[-0.1 / 3, -0.1 / 3, 0.0], [-0.1 / 3, 0.0, 0.0]])
    _close(stats["entropy"], 2.0)
