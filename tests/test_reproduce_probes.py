"""Single-update probes: θ is put back exactly, the first-order check is right, per-token gradient
norms equal a finite-difference directional derivative, and the NTHR probe's pieces by hand."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from reproduce import nthr_probe
from reproduce.probes import gradient, sample_tokens, sgd_update, token_grad_norms
from tests.conftest import hash_trainer


@pytest.fixture(scope="module")
def subject_and_batch(model_dir):
    from sweeps.compose import compose

    cfg = compose(["rollout.prompts_per_step=4", "rollout.n=4", "rollout.max_new_tokens=6",
                   "batching.mini_batch_size=16", "batching.micro_batch_size=8", "algorithm.kl.coef=0"])
    trainer = hash_trainer(model_dir, cfg)
    task = trainer.task
    torch.manual_seed(3)
    sb = trainer.collect(task.train[:4], 1).scored
    assert sb is not None and bool((sb.seq_advantages != 0).any()), "the hash task should give mixed groups"
    return trainer, sb


def _theta(policy):
    return torch.cat([p.detach().flatten() for p in policy.parameters()])


def test_an_update_puts_theta_back_and_is_first_order_for_a_small_step(subject_and_batch):
    trainer, sb = subject_and_batch
    before = _theta(trainer.policy)
    small = sgd_update(trainer, sb, 1e-4)
    assert torch.equal(_theta(trainer.policy), before)
    assert small.ratio == pytest.approx(1.0, abs=1e-2)
    # a huge step leaves the first-order regime: the check must be able to say so
    assert abs(sgd_update(trainer, sb, 1e3).ratio - 1.0) > 0.2
    assert torch.equal(_theta(trainer.policy), before)


def test_token_subsets_split_the_gradient(subject_and_batch):
    """At θ_old every ratio is 1 (no clipping), so the loss is linear in the advantages: the gradient on
    a token set plus the gradient on the rest is the full gradient."""
    trainer, sb = subject_and_batch
    mask = sb.loss_mask.bool()
    some = mask & (torch.rand(mask.shape, generator=torch.Generator().manual_seed(0)) < 0.5)
    _, full = gradient(trainer, sb)
    _, a = gradient(trainer, sb, some)
    _, b = gradient(trainer, sb, mask & ~some)
    for f, x, y in zip(full, a, b):
        torch.testing.assert_close(x + y, f, rtol=1e-4, atol=1e-8)  # HF's RMSNorm runs in fp32


def test_token_gradient_norms_match_a_finite_difference(subject_and_batch):
    """‖∇ ln π(y_t)‖ equals the directional derivative along ∇ ln π / ‖∇ ln π‖, computed here by central
    differences of ln π: an estimate that shares nothing with the backward pass (to fp32 precision: HF's
    RMSNorm computes in fp32 even in a float64 model)."""
    from trainer.logprobs import completion_logprobs

    trainer, sb = subject_and_batch
    mask = sb.loss_mask.bool()
    rows, cols = mask.nonzero()[:3].T
    norms = token_grad_norms(trainer, sb, rows, cols)
    policy, b = trainer.policy, sb.rollout
    params = [p for p in policy.parameters() if p.requires_grad]
    for k in range(len(rows)):
        r, c = int(rows[k]), int(cols[k])

        def logp():
            return completion_logprobs(policy, b.input_ids[r:r + 1], b.attention_mask[r:r + 1], b.prompt_len,
                                       trainer.cfg.rollout.temperature).logp[0, c]
        g = torch.autograd.grad(logp(), params, allow_unused=True)
        g = [torch.zeros_like(p) if x is None else x for p, x in zip(params, g)]
        unit = [x / norms[k] for x in g]
        eps, vals = 1e-3, []
        with torch.no_grad():
            for sign in (1, -1):
                for p, u in zip(params, unit):
                    p.add_(u, alpha=sign * eps)
                vals.append(float(logp()))
                for p, u in zip(params, unit):
                    p.add_(u, alpha=-sign * eps)
        assert (vals[0] - vals[1]) / (2 * eps) == pytest.approx(float(norms[k]), rel=2e-3)


def test_sample_tokens_draws_within_each_fixed_interval():
    p = torch.tensor([[0.1, 0.2, 0.6, 0.9, 0.95], [0.3, 0.8, 0.05, 0.99, 0.5]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    rows, cols, bins = sample_tokens(mask, p, (0.25, 0.5, 0.75), 2, torch.Generator().manual_seed(0))
    assert bool(mask[rows, cols].all())
    lo = torch.tensor([0.0, 0.25, 0.5, 0.75], dtype=torch.float64)[bins]
    hi = torch.tensor([0.25, 0.5, 0.75, 1.0000001], dtype=torch.float64)[bins]
    assert bool(((lo <= p[rows, cols]) & (p[rows, cols] < hi)).all())
    assert torch.bincount(bins, minlength=4).tolist() == [2, 1, 2, 2]  # [0,.25): 3 tokens, [.25,.5): 1, …


def test_per_prompt_delta_by_hand():
    old = torch.zeros(4, 2, dtype=torch.float64)
    new = torch.tensor([[0.1, 0.2], [-0.5, 9.0], [0.3, 0.0], [1.0, 1.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]], dtype=torch.float64)
    correct = torch.tensor([True, True, False, False])
    groups = torch.tensor([0, 0, 1, 1])
    ids, d = nthr_probe.per_prompt_delta(old, new, mask, correct, groups)
    assert ids == [0] and d == [pytest.approx((0.3 + -0.5) / 2)]  # padding (9.0) ignored; group 1 has no correct


def test_random_like_matches_counts_inside_the_mask():
    sel = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 0]], dtype=torch.bool)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    got = nthr_probe.random_like(sel, mask, torch.Generator().manual_seed(1))
    assert got.sum(-1).tolist() == sel.sum(-1).tolist()
    assert not bool((got & ~mask).any())


def test_replace_keeps_the_batch(subject_and_batch):
    _, sb = subject_and_batch
    zero = dataclasses.replace(sb, advantages=torch.zeros_like(sb.advantages))
    assert zero.rollout is sb.rollout and bool((sb.advantages != 0).any())
