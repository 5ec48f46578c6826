"""π_old from the sampler (``algorithm.old_logp_source=rollout``): HF ``generate`` records each sampled
token's log-prob (trainer/rollout/hf.py ``SampledLogprobs``), and the trainer skips its π_old forward.

References: the trainer's own forward (``completion_logprobs``) on the sampled sequences, and a whole
trainer step with ``old_logp_source=recompute``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import one_trainer_step
from trainer.config import BatchingConfig, Config, ConfigError, OldLogpSource, RolloutConfig
from trainer.logprobs import completion_logprobs
from trainer.modeling import load_policy, load_tokenizer
from trainer.rollout import SamplingParams, build_rollout
from trainer.validation import validate

PROMPTS = ["1+2=", "33+4=", "5=", "12+30=", "7+7="]


# generate hands processors float32 logits even for a float64 model: 1e-6 is the floor either way
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.float64, 2e-6)])
@pytest.mark.parametrize("temperature,top_k", [(1.0, 0), (0.7, 5)])
def test_sampled_logprobs_equal_the_trainers_forward(model_dir, dtype, tol, temperature, top_k):
    """Tempered π of every sampled token, over several generate chunks of different widths; top-k
    shapes what is sampled, not π (the trainer's log-probs are of the tempered model)."""
    torch.manual_seed(0)
    policy = load_policy(model_dir, dtype=dtype)
    rollout = build_rollout("hf", policy, load_tokenizer(model_dir), torch.device("cpu"))
    rollout.chunk_size = 4  # 15 rows: 4 generate calls, padded to one width afterwards
    params = SamplingParams(n=3, max_new_tokens=7, temperature=temperature, top_k=top_k, logprobs=True)
    batch = rollout.generate(PROMPTS, params)
    ref = completion_logprobs(policy, batch.input_ids, batch.attention_mask, batch.prompt_len, temperature).logp
    mask = batch.completion_mask.bool()
    assert batch.rollout_logp.shape == ref.shape and mask.sum() > 20
    assert (batch.rollout_logp[mask] <= 0).all()
    torch.testing.assert_close(batch.rollout_logp[mask].double(), ref[mask].double(), rtol=0, atol=tol)
    assert (batch.rollout_logp[~mask] == 0).all()


def test_no_logprobs_unless_asked(model_dir):
    policy = load_policy(model_dir)
    rollout = build_rollout("hf", policy, load_tokenizer(model_dir), torch.device("cpu"))
    assert rollout.generate(PROMPTS[:2], SamplingParams(n=2, max_new_tokens=4)).rollout_logp is None


def _cfg(source: OldLogpSource) -> Config:
    cfg = Config(seed=3)
    cfg.algorithm.old_logp_source = source
    cfg.rollout = dataclasses.replace(RolloutConfig(), n=4, prompts_per_step=8, max_new_tokens=5)
    cfg.batching = BatchingConfig(mini_batch_size=16, micro_batch_size=8)  # 2 mini-batches: the 2nd is off-policy
    cfg.optim.lr = 1e-3
    cfg.diagnostics.every = 0
    return cfg


def _step(model_dir, cfg, monkeypatch=None):
    def no_old_forward(_trainer):  # the point of the option: no π_old forward at all
        from trainer import grpo  # the π_old forward is the one pass cut into whole-group chunks

        monkeypatch.setattr(grpo, "group_chunks", lambda *a: pytest.fail("π_old forward ran"))

    return one_trainer_step(model_dir, cfg, no_old_forward if monkeypatch is not None else None)


def test_a_step_with_the_samplers_logprobs_equals_the_recomputing_step(model_dir, monkeypatch):
    params_re, m_re = _step(model_dir, _cfg(OldLogpSource.recompute))
    params_ro, m_ro = _step(model_dir, _cfg(OldLogpSource.rollout), monkeypatch)
    assert m_re["train/mixed_group_frac"] > 0 and m_re["train/optimizer_steps"] == 2.0
    assert m_re["train/reward"] == m_ro["train/reward"]  # recording log-probs does not change the sample
    assert "train/logp_mismatch" not in m_ro
    assert abs(m_re["train/clip_frac_low"] + m_re["train/clip_frac_high"]
               - m_ro["train/clip_frac_low"] - m_ro["train/clip_frac_high"]) < 1e-12
    start = torch.cat([p.detach().flatten() for p in load_policy(model_dir, dtype=torch.float64).parameters()])
    update_re, update_ro = params_re - start, params_ro - start
    # π_old differs by float32 rounding (≤ 1e-6) only: the same update to 0.1% (Adam's first step is ~lr·sign)
    assert update_re.norm() > 0
    assert (update_ro - update_re).norm() <= 1e-3 * update_re.norm()


def test_nthr_needs_the_recomputing_forward():
    cfg = Config()
    cfg.algorithm.old_logp_source = OldLogpSource.rollout
    cfg.algorithm.nthr.enabled = True
    with pytest.raises(ConfigError, match="old_logp_source=rollout"):
        validate(cfg)
