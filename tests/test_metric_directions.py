"""Every key a run records has a declared better direction (trainer/run_record.py), so tables never
guess which way is better: runs of every variant, with diagnostics and eval, are checked key by key."""

import dataclasses

import pytest
import torch

from tests.conftest import HashTask, one_trainer_step
from trainer.config import Config
from trainer.run_record import PROCESS_FIELDS, Direction, Summary, direction, is_declared

VARIANTS = {
    "grpo_kl_in_loss": {"algorithm.kl.coef": 0.0},
    "nthr": {"algorithm.nthr.enabled": True},
    "ar_lopti": {"algorithm.adv_reweight.enabled": True, "algorithm.lopti.enabled": True},
    "sign_weight": {"algorithm.sign_weight.enabled": True, "algorithm.sign_weight.negative": 0.0},
    "dynamic_sampling": {"algorithm.dynamic_sampling.enabled": True},
    "grpo_fix": {"algorithm.grpo_fix.enabled": True},
    "dfpo": {"algorithm.loss": "dfpo", "batching.mode": "query_preserved"},
    "reward_balanced": {"batching.reward_balanced.enabled": True,
                        "batching.reward_balanced.zero_adv_groups": "count"},
    "sampler_logp": {"algorithm.old_logp_source": "rollout"},
}


def _cfg(settings: dict) -> Config:
    cfg = Config(seed=1)
    cfg.rollout = dataclasses.replace(cfg.rollout, n=4, prompts_per_step=8, max_new_tokens=4)
    cfg.batching.mini_batch_size, cfg.batching.micro_batch_size = 16, 8
    cfg.diagnostics.every = 1
    for key, value in settings.items():
        section, name = key.rsplit(".", 1)
        obj = cfg
        for part in section.split("."):
            obj = getattr(obj, part)
        setattr(obj, name, value)
    return cfg


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_metric_of_a_step_is_declared(model_dir, name):
    _, metrics = one_trainer_step(model_dir, _cfg(VARIANTS[name]))
    undeclared = sorted(k for k in metrics if not is_declared(k))
    assert undeclared == []


def test_eval_and_summary_keys_are_declared(model_dir):
    from trainer.engine import TorchEngine
    from trainer.grpo import GRPOTrainer
    from trainer.modeling import load_policy, load_tokenizer
    from trainer.rollout import build_rollout

    cfg = _cfg({})
    policy, tok = load_policy(model_dir), load_tokenizer(model_dir)
    trainer = GRPOTrainer(cfg, policy, None, tok, TorchEngine(policy, cfg.optim),
                          build_rollout("hf", policy, tok, torch.device("cpu")), HashTask())
    keys = set(trainer.evaluate(HashTask().eval)) | {f.name for f in dataclasses.fields(Summary)}
    not_metrics = ("status", "error", "timing", "warnings", *PROCESS_FIELDS)
    assert sorted(k for k in keys if not is_declared(k) and k not in not_metrics) == []


@pytest.mark.parametrize("key, better", [
    ("final_eval_accuracy", Direction.higher), ("eval/pass@4", Direction.higher),
    ("train/kl", Direction.lower), ("diag/lld_lazy_frac_per_token", Direction.lower),
    ("diag/lld_mean", Direction.higher), ("warmstart_eval_accuracy", Direction.none),
    ("train/nthr/selected_frac", Direction.none), ("diag/bin2_tokens", Direction.none),
    ("train/loss", Direction.lower), ("perf/update_tokens_per_s", Direction.none),
])
def test_directions_by_hand(key, better):
    assert direction(key) == better


def test_an_unknown_key_is_undeclared_and_has_no_direction():
    assert not is_declared("my_metric") and direction("my_metric") == Direction.none
