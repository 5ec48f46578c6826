"""``batching.normalizer``: the exact mini-batch loss (default) against the reference codes' mean of
per-micro-batch losses, each over its own token counts (verl, AR-Lopti)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import HashTask, hash_trainer
from trainer.objectives import Normalizer


def _trainer(model_dir, *overrides):
    from sweeps.compose import compose

    cfg = compose(["rollout.prompts_per_step=4", "rollout.n=4", "rollout.max_new_tokens=6", "algorithm.kl.coef=0",
                   "batching.mini_batch_size=16", *overrides])
    return hash_trainer(model_dir, cfg)


def _update_grads(trainer, sb):
    """The gradient each optimizer step would apply, and the mini-batch it came from (no step taken)."""
    seen = []

    def step():
        seen.append([p.grad.detach().clone() for p in trainer.policy.parameters()])
        trainer.engine.optimizer.zero_grad(set_to_none=True)
        return 1.0

    orig = trainer._optimizer_step
    batches = []

    def spy(sb_, mb, *a, **k):
        batches.append(mb.clone())
        return orig(sb_, mb, *a, **k)

    trainer.engine.step, trainer._optimizer_step = step, spy
    trainer.update(sb, 1, torch.Generator().manual_seed(0))
    return seen, batches


@pytest.fixture(scope="module")
def batch(model_dir):
    trainer = _trainer(model_dir, "batching.micro_batch_size=16")
    torch.manual_seed(5)
    sb = trainer.collect(HashTask().train[:4], 1).scored
    mask = sb.loss_mask.clone()
    for r in range(mask.shape[0]):  # responses of 6, 5, 4 and 3 tokens (untrained, every one ran to the cap)
        mask[r, mask.shape[1] - r % 4:] = 0
    sb = dataclasses.replace(sb, loss_mask=mask)
    lengths = sb.loss_mask.sum(-1)
    assert len(set(lengths.tolist())) > 1, "the test needs responses of different lengths"
    return sb


def test_micro_batch_normalizer_is_the_mean_of_each_micro_batch_over_its_own_tokens(model_dir, batch):
    trainer = _trainer(model_dir, "batching.micro_batch_size=4", "batching.normalizer=micro_batch")
    grads, mbs = _update_grads(trainer, batch)
    assert len(grads) == 1
    params = list(trainer.policy.parameters())
    expected = [torch.zeros_like(p) for p in params]
    chunks = mbs[0].split(4)  # the mini-batch's own order, consecutive chunks
    stage = None
    for chunk in chunks:
        loss, _ = trainer.micro_loss(batch, chunk, Normalizer.of(batch.loss_mask[chunk], trainer._max_len()), stage)
        for e, g in zip(expected, torch.autograd.grad(loss, params, allow_unused=True)):
            if g is not None:
                e += g / len(chunks)
    for got, want in zip(grads[0], expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-10)


def test_the_two_normalizers_agree_when_micro_equals_mini_and_differ_when_it_does_not(model_dir, batch):
    def flat(*o):
        return torch.cat([g.flatten() for g in _update_grads(_trainer(model_dir, *o), batch)[0][0]])

    exact_small = flat("batching.micro_batch_size=4")
    exact_whole = flat("batching.micro_batch_size=16")
    ref_whole = flat("batching.micro_batch_size=16", "batching.normalizer=micro_batch")
    ref_small = flat("batching.micro_batch_size=4", "batching.normalizer=micro_batch")
    torch.testing.assert_close(exact_small, exact_whole, rtol=1e-6, atol=1e-10)  # accumulation is exact
    torch.testing.assert_close(ref_whole, exact_whole, rtol=1e-6, atol=1e-10)  # one micro-batch: the same math
    rel = float((ref_small - exact_whole).norm() / exact_whole.norm())
    assert rel > 1e-3, rel  # unequal token counts per micro-batch: the reference's step is another step
