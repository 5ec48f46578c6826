"""Sign-weighted advantages (docs/algorithms.md §8): the pure function by hand, and positive-only /
negative-only training through the trainer against the same sample without it."""

import pytest
import torch

from trainer.config import Config
from trainer.variants.sign_weight import sign_weight


def test_sign_weight_by_hand():
    adv = torch.tensor([[1.5, -2.0, 0.0], [-0.5, 0.25, 0.0]])
    # w⁺ = 0.1 on 1.5 and 0.25; w⁻ = 2 on −2 and −0.5; zeros stay zero
    torch.testing.assert_close(sign_weight(adv, 0.1, 2.0), torch.tensor([[0.15, -4.0, 0.0], [-1.0, 0.025, 0.0]]))
    assert torch.equal(sign_weight(adv, 1.0, 1.0), adv)
    assert sign_weight(adv.double(), 0.5, 0.5).dtype == torch.float64


def _advantages(model_dir, **sign):
    from tests.conftest import HashTask
    from trainer.engine import TorchEngine
    from trainer.grpo import GRPOTrainer
    from trainer.modeling import load_policy, load_tokenizer
    from trainer.rollout import build_rollout

    cfg = Config(seed=5)
    cfg.rollout.n, cfg.rollout.prompts_per_step, cfg.rollout.max_new_tokens = 4, 8, 5
    if sign:
        cfg.algorithm.sign_weight.enabled = True
        for k, v in sign.items():
            setattr(cfg.algorithm.sign_weight, k, v)
    policy, tok = load_policy(model_dir), load_tokenizer(model_dir)
    task = HashTask()
    trainer = GRPOTrainer(cfg, policy, None, tok, TorchEngine(policy, cfg.optim),
                          build_rollout("hf", policy, tok, torch.device("cpu")), task)
    torch.manual_seed(0)
    got = trainer.collect(task.train, step=1)
    return got.scored.advantages[got.scored.loss_mask.bool()], got.stats


@pytest.mark.parametrize("sign, keep", [({"negative": 0.0}, "positive"), ({"positive": 0.0}, "negative")])
def test_one_sided_training_zeroes_the_other_sign_and_keeps_the_sample(model_dir, sign, keep):
    plain, _ = _advantages(model_dir)
    one_sided, stats = _advantages(model_dir, **sign)
    assert (plain > 0).any() and (plain < 0).any(), "the sample needs both signs"
    kept = plain > 0 if keep == "positive" else plain < 0
    assert torch.equal(one_sided[kept], plain[kept])
    assert (one_sided[~kept] == 0).all()
    assert stats["train/sign_weight/zeroed_frac"] == pytest.approx(float((~kept & (plain != 0)).float().mean()))
