"""Rollouts from different steps stack into one update batch without changing any log-prob.

Reward-balanced buffering concatenates batches whose prompts were padded to different widths;
re-padding must leave every token's log-prob (positions skip left padding) exactly as it was.
"""

import pytest
import torch

from trainer.config import ModelConfig
from trainer.logprobs import completion_logprobs
from trainer.modeling import build_tiny, load_policy, load_tokenizer
from trainer.rollout import SamplingParams, build_rollout
from trainer.rollout.base import concat_rollouts


@pytest.fixture(scope="module")
def model_and_tok(tmp_path_factory):
    cfg = ModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
    d = build_tiny(cfg, tmp_path_factory.mktemp("tiny"), seed=0)
    return load_policy(d, dtype=torch.float64).eval(), load_tokenizer(d)


def test_concat_keeps_every_logprob_and_mask(model_and_tok):
    model, tok = model_and_tok
    rollout = build_rollout("hf", model, tok, torch.device("cpu"))
    torch.manual_seed(0)
    a = rollout.generate(["1+2=", "13+14="], SamplingParams(n=2, max_new_tokens=4))
    b = rollout.generate(["7=", "123+456+7=", "9-1="], SamplingParams(n=2, max_new_tokens=6))
    assert a.prompt_len != b.prompt_len  # different left padding: the case that needs re-padding
    both = concat_rollouts([a, b])
    lp = lambda r: completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_len).logp  # noqa: E731
    with torch.no_grad():
        la, lb, lab = lp(a), lp(b), lp(both)
    ta, tb = la.shape[1], lb.shape[1]
    ma, mb = a.completion_mask.bool(), b.completion_mask.bool()
    torch.testing.assert_close(lab[: a.size, :ta][ma], la[ma], rtol=0, atol=1e-12)
    torch.testing.assert_close(lab[a.size :, :tb][mb], lb[mb], rtol=0, atol=1e-12)
    assert torch.equal(both.completion_mask[: a.size, :ta], a.completion_mask)
    assert both.completion_mask[: a.size, ta:].sum() == 0  # new columns are padding
    assert both.completions == a.completions + b.completions
    assert torch.equal(both.group_ids, torch.cat([a.group_ids, b.group_ids]))


def test_select_then_concat_round_trips(model_and_tok):
    model, tok = model_and_tok
    rollout = build_rollout("hf", model, tok, torch.device("cpu"))
    torch.manual_seed(1)
    r = rollout.generate(["1+2=", "3+4=", "5+6="], SamplingParams(n=2, max_new_tokens=4))
    parts = [r.select(torch.tensor([0, 1])), r.select(torch.tensor([2, 3, 4, 5]))]
    back = concat_rollouts(parts)
    assert torch.equal(back.input_ids, r.input_ids) and torch.equal(back.completion_mask, r.completion_mask)
