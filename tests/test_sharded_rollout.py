"""Data-parallel sampling (trainer/rollout/sharded.py) with 2 real gloo ranks.

Each rank samples its share of the prompts; every rank must end with the same whole batch, in
prompt order, with each rank's rows being exactly what that rank's own stream samples (checked
against a single-process re-run of the same seed), and ranks must not reuse each other's draws.
"""

from __future__ import annotations

import os

import pytest
import torch

from trainer.distributed import free_port
from trainer.modeling import load_policy, load_tokenizer
from trainer.rollout import SamplingParams, build_rollout
from trainer.rollout.sharded import ShardedRollout, rank_seed, shard_slices

pytestmark = pytest.mark.slow
PARAMS = SamplingParams(n=3, max_new_tokens=6)


def _prompts(k: int) -> list[str]:
    return [f"{i}+{i + 1}=" for i in range(k)]


def _worker(rank, world, port, model_dir, out, n_prompts, same_prompt):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    tok = load_tokenizer(model_dir)
    inner = build_rollout("hf", load_policy(model_dir), tok, torch.device("cpu"))
    torch.manual_seed(123)  # the trainer seeds (seed, step) before sampling: the same on every rank
    prompts = ["7+8="] * n_prompts if same_prompt else _prompts(n_prompts)
    batch = ShardedRollout(inner, rank, world, torch.device("cpu")).generate(prompts, PARAMS)
    torch.save(batch, f"{out}.{rank}")
    # every rank done with its last collective before any closes its connections: gloo aborts a rank
    # (SIGABRT, no message) whose peer hangs up while bytes of the last operation are in flight
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _spawn(world, model_dir, tmp_path, n_prompts, same_prompt=False):
    out = tmp_path / f"b{world}_{n_prompts}_{int(same_prompt)}"
    torch.multiprocessing.spawn(_worker, args=(world, free_port(), str(model_dir), str(out), n_prompts, same_prompt),
                                nprocs=world)
    return [torch.load(f"{out}.{r}", weights_only=False) for r in range(world)]


def test_shard_slices_cover_every_prompt_once():
    for n in range(0, 9):
        for world in range(1, 5):
            parts = shard_slices(n, world)
            assert len(parts) == world
            assert [i for p in parts for i in p] == list(range(n))
            sizes = [len(p) for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_every_rank_gets_the_whole_batch_and_each_shard_is_its_ranks_own_sample(model_dir, tmp_path):
    b0, b1 = _spawn(2, model_dir, tmp_path, n_prompts=5)
    for field in ("input_ids", "attention_mask", "completion_mask", "truncated", "group_ids"):
        assert torch.equal(getattr(b0, field), getattr(b1, field)), field
    assert b0.completions == b1.completions
    assert b0.group_ids.tolist() == [g for g in range(5) for _ in range(PARAMS.n)]
    # Independent reference: one process replays rank r's stream on rank r's prompts.
    tok = load_tokenizer(model_dir)
    inner = build_rollout("hf", load_policy(model_dir), tok, torch.device("cpu"))
    torch.manual_seed(123)
    base = int(torch.randint(0, 2**62, (1,)).item())
    for rank, rows in enumerate(shard_slices(5, 2)):
        torch.manual_seed(rank_seed(base, rank))
        ref = inner.generate(_prompts(5)[rows.start:rows.stop], PARAMS)
        mine = torch.isin(b0.group_ids, torch.tensor(list(rows)))
        assert [c for c, m in zip(b0.completions, mine.tolist()) if m] == ref.completions
        width = ref.completion_mask.shape[1]
        assert torch.equal(b0.completion_ids[mine][:, :width] * b0.completion_mask[mine][:, :width],
                           ref.completion_ids * ref.completion_mask)


def test_ranks_draw_from_different_streams(model_dir, tmp_path):
    """Same prompt on both ranks: identical streams would give identical completions."""
    b0, _ = _spawn(2, model_dir, tmp_path, n_prompts=4, same_prompt=True)
    first = b0.completion_ids[b0.group_ids < 2] * b0.completion_mask[b0.group_ids < 2]
    second = b0.completion_ids[b0.group_ids >= 2] * b0.completion_mask[b0.group_ids >= 2]
    assert not torch.equal(first, second)


def test_fewer_prompts_than_ranks(model_dir, tmp_path):
    b0, b1 = _spawn(2, model_dir, tmp_path, n_prompts=1)
    assert b0.size == b1.size == PARAMS.n
    assert torch.equal(b0.input_ids, b1.input_ids)
