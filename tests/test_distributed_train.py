"""Data-parallel GRPO: 2 processes under DeepSpeed ZeRO-2 (gloo, CPU) follow the same loss
trajectory as 1 process on the same global batch.

Every rank samples the whole rollout batch (same seed), takes a contiguous shard of each
mini-batch, and normalizes by the whole mini-batch; DeepSpeed all-reduces the gradients.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

pytest.importorskip("deepspeed", reason="engine.backend=deepspeed needs the deepspeed extra")
pytestmark = pytest.mark.slow

from tests.conftest import HashTask  # noqa: E402
from trainer.config import BatchingConfig, Config, EngineBackend, EngineConfig, RolloutConfig  # noqa: E402
from trainer.distributed import free_port  # noqa: E402
from trainer.engine import build_engine  # noqa: E402
from trainer.grpo import GRPOTrainer  # noqa: E402
from trainer.modeling import load_policy, load_tokenizer  # noqa: E402
from trainer.rollout import build_rollout  # noqa: E402

STEPS = 3
KEYS = (
    "train/loss",
    "train/pg_loss",
    "train/grad_norm",
    "train/clip_frac_low",
    "train/clip_frac_high",
    "train/entropy",
)


def _cfg(zero: int) -> Config:
    cfg = Config(seed=5)
    cfg.rollout = dataclasses.replace(RolloutConfig(), n=4, prompts_per_step=8, max_new_tokens=5)
    cfg.batching = BatchingConfig(mini_batch_size=16, micro_batch_size=3)  # 2 mini-batches, ragged shards
    cfg.engine = EngineConfig(backend=EngineBackend.deepspeed, zero_stage=zero, device="cpu")
    cfg.optim.lr = 1e-3  # big enough that the second mini-batch is off-policy and clipping can act
    cfg.diagnostics.every = 0
    return cfg


def _worker(rank, world, port, model_dir, out, zero):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    cfg = _cfg(zero)
    tok = load_tokenizer(model_dir)
    engine = build_engine(
        "deepspeed", load_policy(model_dir), cfg.optim, cfg.engine, micro_batch_per_gpu=cfg.batching.micro_batch_size
    )
    task = HashTask()
    trainer = GRPOTrainer(
        cfg, engine.module, None, tok, engine, build_rollout("hf", engine.module, tok, torch.device("cpu")), task
    )
    metrics = [trainer.step(task.train, step) for step in range(1, STEPS + 1)]
    params = torch.cat([p.detach().flatten() for p in engine.full_state_dict().values()])
    if rank == 0:
        torch.save({"metrics": metrics, "params": params}, out)
    # every rank done with its last collective before any closes its connections: gloo aborts a rank
    # (SIGABRT, no message) whose peer hangs up while bytes of the last operation are in flight
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _run(world, model_dir, tmp_path, zero):
    out = tmp_path / f"w{world}_z{zero}.pt"
    torch.multiprocessing.spawn(_worker, args=(world, free_port(), str(model_dir), str(out), zero), nprocs=world)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("zero", [2, 3])
def test_two_ranks_follow_the_one_process_trajectory(model_dir, tmp_path, zero):
    one = _run(1, model_dir, tmp_path, zero)
    two = _run(2, model_dir, tmp_path, zero)
    assert any(m["train/mixed_group_frac"] > 0 for m in one["metrics"])  # non-zero advantages
    assert one["metrics"][0]["train/optimizer_steps"] == 2.0
    for m1, m2 in zip(one["metrics"], two["metrics"]):
        assert m1["train/reward"] == m2["train/reward"]  # same samples: the same global batch
        for k in KEYS:
            assert abs(m1[k] - m2[k]) <= 1e-5 * max(1.0, abs(m1[k])), (k, m1[k], m2[k])
    torch.testing.assert_close(two["params"], one["params"], rtol=0, atol=1e-5)
