"""``algorithm.is_correction``: importance weights between the sampler's behaviour policy μ and π_old,
against hand-computed weights for each mode (TRL's vllm_importance_sampling_* semantics), the
weighted-loss identity it relies on, and through a lagged run."""

from __future__ import annotations

import math

import pytest
import torch

from sweeps.compose import compose
from tests.conftest import fast_overrides
from trainer.knobs import ConfigError
from trainer.run import run_training
from trainer.run_record import read_jsonl
from trainer.token_loss import clipped_surrogate
from trainer.validation import validate
from trainer.variants.is_correction import ISMode, importance_weights

# π_old and μ of three tokens of one response and two of another (its third is padding)
OLD = torch.tensor([[0.5, 0.2, 0.9], [0.6, 0.1, 0.7]]).log()
MU = torch.tensor([[0.25, 0.4, 0.3], [0.3, 0.1, 0.2]]).log()
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
# token ratios: [[2, 0.5, 3], [2, 1, (3.5, masked)]]; response products: 3 and 2


@pytest.mark.parametrize("mode, expected, capped", [
    ("token_truncate", [[2.0, 0.5, 2.5], [2.0, 1.0, 1.0]], 1 / 5),
    ("token_mask", [[2.0, 0.5, 0.0], [2.0, 1.0, 1.0]], 1 / 5),
    ("sequence_truncate", [[2.5, 2.5, 2.5], [2.0, 2.0, 1.0]], 1 / 2),
    ("sequence_mask", [[0.0, 0.0, 0.0], [2.0, 2.0, 1.0]], 1 / 2),
])
def test_weights_by_hand(mode, expected, capped):
    w, stats = importance_weights(OLD, MU, MASK, ISMode(mode), cap=2.5)
    got = (w * MASK + (1 - MASK)).flatten().tolist()  # shown as 1 at the padding: its advantage is masked
    assert got == pytest.approx([x for row in expected for x in row], rel=1e-6)
    assert stats["is_capped_frac"] == pytest.approx(capped)
    if mode.startswith("token"):
        assert stats["is_ratio_max"] == pytest.approx(3.0) and stats["is_ratio_mean"] == pytest.approx(8.5 / 5)
    else:
        assert stats["is_ratio_max"] == pytest.approx(3.0) and stats["is_ratio_mean"] == pytest.approx(2.5)


def test_weights_are_one_when_the_sampler_is_pi_old():
    w, stats = importance_weights(OLD, OLD, MASK, ISMode.token_truncate, cap=2.0)
    assert torch.equal(w, torch.ones_like(w)) and stats["is_capped_frac"] == 0.0


@pytest.mark.parametrize("dual", [None, 3.0])
def test_a_weighted_advantage_is_the_weighted_token_loss(dual):
    """max(−ρwA, −clip(ρ)wA) = w·max(−ρA, −clip(ρ)A) for w ≥ 0 (dual clip included): weighting the
    advantage is weighting the clipped surrogate, value and gradient."""
    g = torch.Generator().manual_seed(0)
    log_ratio = (0.4 * torch.randn(6, 5, generator=g)).requires_grad_(True)
    adv = torch.randn(6, 5, generator=g)
    w = torch.rand(6, 5, generator=g) * 3
    cfg = compose(["algorithm.clip.low=0.2", "algorithm.clip.high=0.28",
                   f"algorithm.clip.dual={'null' if dual is None else dual}"]).algorithm
    weighted = clipped_surrogate(log_ratio, adv * w, cfg).loss
    (g1,) = torch.autograd.grad(weighted.sum(), log_ratio)
    scaled = w * clipped_surrogate(log_ratio, adv, cfg).loss
    (g2,) = torch.autograd.grad(scaled.sum(), log_ratio)
    assert torch.allclose(weighted, scaled, atol=1e-6) and torch.allclose(g1, g2, atol=1e-6)


def test_a_sequence_ratio_loss_is_refused():
    with pytest.raises(ConfigError, match="algorithm.is_correction.enabled=true: algorithm.loss=gspo takes its ratio"):
        validate(compose(["variant=gspo", "algorithm.is_correction.enabled=true"]))


@pytest.mark.slow
def test_a_lagged_run_logs_its_importance_weights_and_they_change_the_update(tmp_path):
    common = [*fast_overrides(tmp_path, steps=5), "model.hidden_size=64", "model.intermediate_size=128",
              "sft.steps=300", "rollout.prompts_per_step=8", "engine.threads=1", "rollout.async_steps=1",
              "rollout.async_worker=inline", "train.eval_every=5"]
    rows = {}
    tis_on = ["algorithm.is_correction.enabled=true", "algorithm.is_correction.cap=1.05"]
    for name, extra in (("none", []), ("tis", tis_on)):
        summary = run_training(compose([*common, *extra]), tmp_path / name, log=lambda *a: None)
        assert summary.status == "completed"
        rows[name] = read_jsonl(tmp_path / name / "metrics.jsonl")[1:]
    tis, none = rows["tis"], rows["none"]
    assert "train/is_ratio_mean" not in none[0]
    assert tis[0]["train/is_ratio_mean"] == pytest.approx(1.0, abs=1e-5)  # step 1: sampled from π_old itself
    stale = [r for r in tis[1:] if r["train/grad_norm"] > 0]
    assert stale and any(abs(r["train/is_ratio_mean"] - 1) > 1e-4 for r in stale)
    assert any(r["train/is_capped_frac"] > 0 for r in stale)
    assert all(math.isfinite(r["train/loss"]) for r in tis)
    assert tis[0]["train/grad_norm"] == pytest.approx(none[0]["train/grad_norm"], rel=1e-5)  # weights 1 there
    assert [r["train/grad_norm"] for r in tis[1:]] != [r["train/grad_norm"] for r in none[1:]]
