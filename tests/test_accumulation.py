"""Micro-batch gradient accumulation never changes the math (docs/algorithms.md §1.7).

Every micro-batch is normalized by the *mini-batch's* counts, so Σ_micro ∇agg(micro) = ∇agg(mini).
Checked on a real tiny HF causal LM in float64 with left-padded prompts and ragged completions,
for each of the four loss aggregations, then end to end through ``GRPOTrainer.update``.
"""

import dataclasses

import pytest
import torch

from trainer.config import (
    AlgorithmConfig,
    BatchingConfig,
    ClipConfig,
    Config,
    KLConfig,
    LossAgg,
    OptimConfig,
    RolloutConfig,
)
from trainer.engine import TorchEngine
from trainer.grpo import GRPOTrainer, ScoredBatch
from trainer.logprobs import completion_logprobs
from trainer.modeling import load_policy
from trainer.objectives import Normalizer, policy_loss
from trainer.rollout import RolloutBatch

AGGS = list(LossAgg)
P, T = 4, 6  # prompt columns (left-padded), completion columns (right-padded)
MAX_LEN = 8  # Dr.GRPO constant, deliberately ≠ T
TOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny matrices: intra-op threads only add spin-wait overhead (seconds on a busy 2-core box)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _policy(model_dir):
    return load_policy(model_dir).double()


def _synthetic(n: int, seed: int):
    """Left-padded prompts + right-padded ragged completions; one row loses its loss mask
    (a truncated completion under mask_truncated)."""
    g = torch.Generator().manual_seed(seed)
    prompt_lens = torch.tensor([4, 2, 3, 1, 4, 2, 3, 4] * (n // 8))
    comp_lens = torch.tensor([6, 1, 4, 2, 5, 3, 6, 2] * (n // 8))
    input_ids = torch.randint(4, 104, (n, P + T), generator=g)
    cols = torch.arange(P + T)
    prompt_part = cols.unsqueeze(0) >= (P - prompt_lens).unsqueeze(1)
    comp_mask = (torch.arange(T).unsqueeze(0) < comp_lens.unsqueeze(1)).long()
    attention = torch.cat([prompt_part[:, :P].long(), comp_mask], dim=1)
    input_ids = torch.where(attention.bool(), input_ids, torch.zeros_like(input_ids))  # pad id 0
    loss_mask = comp_mask.double().clone()
    loss_mask[6] = 0.0  # a fully masked row (truncated, dropped from the loss)
    return input_ids, attention, comp_mask, loss_mask, g


def _inputs(model, seed=0, n=8):
    input_ids, attention, comp_mask, loss_mask, g = _synthetic(n, seed)
    with torch.no_grad():
        logp = completion_logprobs(model, input_ids, attention, P).logp.double()
    # π_old a little away from π_θ so both clip sides and the unclipped branch all occur
    old_logp = logp + 0.3 * torch.randn(logp.shape, generator=g, dtype=torch.float64)
    ref_logp = logp + 0.2 * torch.randn(logp.shape, generator=g, dtype=torch.float64)
    adv = torch.randn(n, generator=g, dtype=torch.float64)
    return dict(input_ids=input_ids, attention=attention, comp_mask=comp_mask, loss_mask=loss_mask,
                old_logp=old_logp, ref_logp=ref_logp, adv=adv)


def _grad(model, d, cfg: AlgorithmConfig, splits: list[list[int]], own_normalizer=False, with_extras=False):
    """Accumulated gradient (flat) over micro-batches ``splits`` of the 8 rows."""
    model.zero_grad(set_to_none=True)
    mini_norm = Normalizer.of(d["loss_mask"], MAX_LEN)
    for rows in splits:
        idx = torch.tensor(rows)
        st = completion_logprobs(model, d["input_ids"][idx], d["attention"][idx], P, with_entropy=True)
        norm = Normalizer.of(d["loss_mask"][idx], MAX_LEN) if own_normalizer else mini_norm
        loss, _ = policy_loss(
            st.logp, d["old_logp"][idx], d["adv"][idx], d["loss_mask"][idx], cfg,
            ref_logp=d["ref_logp"][idx] if with_extras else None,
            entropy=st.entropy if with_extras else None,
            normalizer=norm,
        )
        loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).clone()


FULL = [list(range(8))]
PAIRS = [[0, 1], [2, 3], [4, 5], [6, 7]]
UNEVEN = [[0, 1, 2], [3, 4, 5, 6, 7]]
SHUFFLED_UNEVEN = [[7, 2, 4], [0, 6, 1, 5, 3]]


@pytest.fixture(scope="module")
def setup(model_dir):
    model = _policy(model_dir)
    return model, _inputs(model)


def _assert_same(a, b):
    assert torch.isfinite(a).all() and a.abs().max() > 1e-4  # a real, non-trivial gradient
    torch.testing.assert_close(b, a, rtol=0, atol=TOL)


@pytest.mark.parametrize("agg", AGGS, ids=[a.value for a in AGGS])
@pytest.mark.parametrize("splits", [PAIRS, UNEVEN, SHUFFLED_UNEVEN], ids=["pairs", "3+5", "3+5-shuffled"])
def test_micro_batches_sum_to_mini_batch_gradient(setup, agg, splits):
    model, d = setup
    cfg = AlgorithmConfig(loss_agg=agg, loss_agg_max_len=MAX_LEN)
    _assert_same(_grad(model, d, cfg, FULL), _grad(model, d, cfg, splits))


@pytest.mark.parametrize("agg", AGGS, ids=[a.value for a in AGGS])
def test_accumulation_exact_with_kl_entropy_dual_clip_gspo(setup, agg):
    model, d = setup
    for loss in ("ppo_clip", "gspo"):
        cfg = AlgorithmConfig(
            loss=loss, loss_agg=agg, loss_agg_max_len=MAX_LEN, entropy_coef=0.01,
            clip=ClipConfig(low=0.2, high=0.28, dual=3.0), kl=KLConfig(coef=0.1),
        )
        _assert_same(_grad(model, d, cfg, FULL, with_extras=True), _grad(model, d, cfg, UNEVEN, with_extras=True))


def test_full_batch_default_normalizer_is_its_own(setup):
    # policy_loss without ``normalizer`` on the whole mini-batch = with Normalizer.of(mask, loss_agg_max_len)
    model, d = setup
    cfg = AlgorithmConfig(loss_agg=LossAgg.seq_mean_token_sum_norm, loss_agg_max_len=MAX_LEN)
    st = completion_logprobs(model, d["input_ids"], d["attention"], P)
    a, _ = policy_loss(st.logp, d["old_logp"], d["adv"], d["loss_mask"], cfg)
    b, _ = policy_loss(st.logp, d["old_logp"], d["adv"], d["loss_mask"], cfg,
                       normalizer=Normalizer.of(d["loss_mask"], MAX_LEN))
    assert float(a.detach()) == float(b.detach())


def test_micro_batch_own_normalizer_changes_token_mean_gradient(setup):
    # The bug class the design prevents: each micro-batch dividing by its own token count.
    # Pairs have 6+1, 4+2, 5+3, 0+2 = 7, 6, 8, 2 tokens vs 23 in the mini-batch, so the
    # per-micro weights 1/7, 1/6, 1/8, 1/2 replace 1/23 and the gradient is no longer the same.
    model, d = setup
    cfg = AlgorithmConfig(loss_agg=LossAgg.token_mean)
    full = _grad(model, d, cfg, FULL)
    wrong = _grad(model, d, cfg, PAIRS, own_normalizer=True)
    assert (wrong - full).abs().max() > 1e-3 * full.abs().max()
    # and it is not a rescaling of the right one either (a uniform factor would be absorbed by lr)
    scale = (wrong @ full) / (full @ full)
    assert (wrong - scale * full).abs().max() > 1e-3 * full.abs().max()


# ================================================================ end to end through GRPOTrainer.update
def _scored_batch(model, n=16, seed=1) -> ScoredBatch:
    d = _inputs(model, seed=seed, n=n)
    rollout = RolloutBatch(
        input_ids=d["input_ids"], attention_mask=d["attention"], completion_mask=d["comp_mask"],
        prompt_len=P, completions=[""] * n, truncated=torch.zeros(n, dtype=torch.bool),
        group_ids=torch.arange(n // 4).repeat_interleave(4),
    )
    adv = d["adv"] if d["adv"].dim() == 2 else d["adv"].unsqueeze(-1).expand_as(d["old_logp"])
    return ScoredBatch(
        rollout=rollout, rewards=torch.zeros(n), correct=torch.zeros(n, dtype=torch.bool),
        seq_advantages=adv[:, 0].clone(), advantages=adv.clone(), old_logp=d["old_logp"], ref_logp=None,
        loss_mask=d["loss_mask"], sampled_at=torch.zeros(n, dtype=torch.long),
    )


def _cfg(agg: LossAgg, micro: int) -> Config:
    cfg = Config()
    cfg.algorithm = AlgorithmConfig(loss_agg=agg, ppo_epochs=2, clip=ClipConfig(low=0.2, high=0.28))
    cfg.batching = BatchingConfig(mini_batch_size=8, micro_batch_size=micro)
    cfg.rollout = dataclasses.replace(RolloutConfig(), n=4, prompts_per_step=4, max_new_tokens=MAX_LEN)
    cfg.optim = OptimConfig(lr=1e-4, grad_clip=1.0)
    return cfg


def _run_update(model_dir, sb, cfg, micro_loss=None):
    policy = _policy(model_dir)
    trainer = GRPOTrainer(cfg, policy, None, None, TorchEngine(policy, cfg.optim), None, None)
    if micro_loss is not None:
        trainer.micro_loss = micro_loss.__get__(trainer)
    out = trainer.update(sb, step=0, generator=torch.Generator().manual_seed(123))
    return torch.cat([p.detach().flatten() for p in policy.parameters()]), out


@pytest.fixture(scope="module")
def scored(model_dir):
    return _scored_batch(_policy(model_dir))


@pytest.mark.parametrize("agg", AGGS, ids=[a.value for a in AGGS])
def test_update_identical_with_and_without_accumulation(model_dir, scored, agg):
    # mini-batch 8 in one micro-batch vs four micro-batches of 2; 2 epochs × 2 mini-batches = 4 steps
    start = torch.cat([p.detach().flatten() for p in _policy(model_dir).parameters()])
    p_one, out_one = _run_update(model_dir, scored, _cfg(agg, micro=8))
    p_acc, out_acc = _run_update(model_dir, scored, _cfg(agg, micro=2))
    assert out_one["optimizer_steps"] == out_acc["optimizer_steps"] == 4.0
    assert (p_one - start).abs().max() > 1e-5  # the update really moved the weights
    torch.testing.assert_close(p_acc, p_one, rtol=0, atol=TOL)
    for key in ("loss", "grad_norm", "pg_loss", "clip_frac_low", "clip_frac_high", "ratio_mean", "entropy"):
        assert abs(out_acc[key] - out_one[key]) <= TOL * max(1.0, abs(out_one[key])), key


def test_update_detects_micro_batch_normalizer(model_dir, scored):
    # Control for the test above: a trainer whose micro-batches normalize by themselves
    # ends up with different weights, so the comparison is sensitive to the bug class.
    def own_norm_micro_loss(self, sb, idx, norm, stage=None):
        return GRPOTrainer.micro_loss(self, sb, idx, Normalizer.of(sb.loss_mask[idx], self._max_len()), stage)

    p_one, _ = _run_update(model_dir, scored, _cfg(LossAgg.token_mean, micro=8))
    p_bad, _ = _run_update(model_dir, scored, _cfg(LossAgg.token_mean, micro=2), micro_loss=own_norm_micro_loss)
    assert (p_bad - p_one).abs().max() > 10 * TOL
