"""Each variant at its neutral setting reproduces plain GRPO.

Whole trainer steps on a real tiny float64 model and real HF sampling; the task is a hash of the
completion text (a fixed reward function that gives mixed groups from an untrained model, so NTHR,
AR and Lopti have something to act on). Where a variant has an exact neutral value the parameters
after the step are compared bit for bit; where it is only neutral at θ = θ_old (GRPO-fix, batching
with one mini-batch) they are compared to 1e-12.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import HashTask, hash_trainer, one_trainer_step
from trainer import update_plan
from trainer.config import AlgorithmConfig, BatchingConfig, Config, RolloutConfig
from trainer.objectives import policy_loss
from trainer.variants.adv_reweight import advantage_reweight
from trainer.variants.grpo_fix import GRPOFixConfig
from trainer.variants.lopti import LoptiConfig
from trainer.variants.nthr import NTHRConfig


def _cfg(**algorithm) -> Config:
    cfg = Config(seed=3)
    cfg.algorithm = AlgorithmConfig(**algorithm)
    cfg.rollout = dataclasses.replace(RolloutConfig(), n=4, prompts_per_step=8, max_new_tokens=5)
    cfg.batching = BatchingConfig(mini_batch_size=32, micro_batch_size=8)  # one mini-batch of 8 × 4
    cfg.diagnostics.every = 0
    return cfg


def _step(model_dir, cfg: Config):
    """Parameters after one trainer step, and its metrics."""
    return one_trainer_step(model_dir, cfg)


@pytest.fixture(scope="module")
def grpo(model_dir):
    return _step(model_dir, _cfg())


def test_the_fixture_has_mixed_groups(grpo):
    _, m = grpo
    assert 0 < m["train/mixed_group_frac"], "no mixed group: the comparisons below would be vacuous"


def test_nthr_eta_one_is_grpo_bit_for_bit(model_dir, grpo):
    params, m = _step(model_dir, _cfg(nthr=NTHRConfig(enabled=True, beta=-float("inf"), eta=1.0)))
    assert m["train/nthr/selected_frac"] == 1.0  # β = −∞: every negative token selected, scaled by 1
    assert torch.equal(params, grpo[0])


def test_nthr_eta_zero_changes_the_update(model_dir, grpo):
    # control: the same path with η = 0 zeroes every negative token's advantage
    params, _ = _step(model_dir, _cfg(nthr=NTHRConfig(enabled=True, beta=-float("inf"), eta=0.0)))
    assert not torch.allclose(params, grpo[0])


def test_grpo_fix_is_grpo_on_policy(model_dir, grpo):
    # one mini-batch, μ = 1: every ratio is 1, where the symmetric clip and PPO's agree
    params, _ = _step(model_dir, _cfg(grpo_fix=GRPOFixConfig(enabled=True)))
    torch.testing.assert_close(params, grpo[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["query_preserved", "seqlen_balanced"])
def test_batching_mode_is_irrelevant_with_one_minibatch(model_dir, grpo, mode):
    cfg = _cfg()
    cfg.batching.mode = mode
    cfg.batching.seqlen_partitions = 2
    params, _ = _step(model_dir, cfg)
    torch.testing.assert_close(params, grpo[0], rtol=0, atol=1e-12)


def test_lopti_stages_add_up_to_the_grpo_gradient_at_the_old_policy(model_dir):
    """Stage low + stage high (all-token denominators, KL masked per stage) = one GRPO pass,
    gradient for gradient, at θ = θ_old: Lopti only reorders the update."""
    cfg = _cfg(lopti=LoptiConfig(enabled=True, eta=0.5))
    trainer = hash_trainer(model_dir, cfg)
    policy, task = trainer.policy, trainer.task
    torch.manual_seed(0)
    sb = trainer.collect(task.train, step=1).scored
    idx = torch.arange(sb.size)
    # an untrained model spreads its mass thin: split at the median π_old so both stages have tokens
    cfg.algorithm.lopti.eta = float(sb.old_logp[sb.loss_mask.bool()].exp().median())

    def grad(stage):
        policy.zero_grad()
        from trainer.objectives import Normalizer

        norm = Normalizer.of(stage.denom, trainer._max_len())
        loss, _ = trainer.micro_loss(sb, idx, norm, stage)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in policy.parameters()])

    low, high = update_plan.stages(cfg, sb.old_logp, sb.loss_mask)
    assert low.name == "low" and high.name == "high"
    assert 0 < int(low.active.sum()) < int(sb.loss_mask.sum())  # both stages have tokens
    from trainer.update_plan import Stage

    whole = grad(Stage("all", None, sb.loss_mask))
    # Exact in log-prob space; through the model, two backward passes vs one differ at float32
    # rounding, because Qwen2's RMSNorm computes in float32 even in a float64 model.
    torch.testing.assert_close(grad(low) + grad(high), whole, rtol=0, atol=1e-6 * float(whole.abs().max()))


def test_ar_alpha_zero_leaves_loss_and_gradient_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    logp = (-torch.rand(6, 5, generator=g, dtype=torch.float64)).requires_grad_()
    old = logp.detach() + 0.1 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    adv = torch.randn(6, generator=g, dtype=torch.float64)
    mask = (torch.rand(6, 5, generator=g) > 0.2).double()
    cfg = AlgorithmConfig()
    a, _ = policy_loss(logp, old, adv, mask, cfg)
    (ga,) = torch.autograd.grad(a, logp)
    b, _ = policy_loss(logp, old, advantage_reweight(adv, old, 0.0), mask, cfg)
    (gb,) = torch.autograd.grad(b, logp)
    assert torch.equal(a, b) and torch.equal(ga, gb)


def test_lopti_skipping_rows_without_stage_tokens_changes_nothing(model_dir, monkeypatch):
    """The update skips rows with no active token in a stage (a speed-up); the weights it reaches
    equal those of an update that runs every row through both stages."""
    from trainer.seeds import sampling_seed

    cfg = _cfg(lopti=LoptiConfig(enabled=True, eta=0.5))
    cfg.batching.micro_batch_size = 4
    # η = the largest per-row minimum of π_old: that row has no low token, most others do
    probe = hash_trainer(model_dir, cfg)
    torch.manual_seed(sampling_seed(cfg.seed, 1))  # the step's own sampling seed: the same rollouts
    sb = probe.collect(HashTask().train, step=1).scored
    probs = sb.old_logp.exp().masked_fill(~sb.loss_mask.bool(), float("inf"))
    cfg.algorithm.lopti.eta = float(probs.min(-1).values.max())
    fast, m = _step(model_dir, cfg)
    low_rows = int((probs < cfg.algorithm.lopti.eta).any(-1).sum())
    assert 0 < low_rows < sb.size, "the probe must leave some rows without low tokens"
    monkeypatch.setattr(update_plan, "live_rows", lambda cfg, mb, stage: mb)
    full, _ = _step(model_dir, cfg)
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n,c,k", [(4, 0, 1), (4, 1, 1), (4, 2, 2), (8, 3, 4), (8, 8, 8), (5, 1, 5), (10, 4, 3)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    """Chen et al. 2021: 1 − C(n−c, k)/C(n, k), checked against math.comb."""
    import math

    from trainer.batch_stats import pass_at_k

    assert abs(pass_at_k(n, c, k) - (1 - math.comb(n - c, k) / math.comb(n, k))) < 1e-12
