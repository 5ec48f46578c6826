"""Data-parallel sampling: each rank generates the groups of its share of the prompts, then every
rank gets the whole batch (all-gather), in prompt order.

Without it every rank of an N-rank run samples the whole batch: N times the generation work for
the same result. With it, generation costs 1/N per rank; everything after sampling (rewards, the
π_old forward, advantages, the sharded update) sees the same full batch on every rank, so the
update semantics do not depend on the rank count.

Randomness: the trainer seeds the global RNG with a function of (seed, step) before sampling.
Each rank draws one number from it (the same on every rank) and samples from a stream seeded by
that number and its rank, so ranks never reuse each other's random draws, and a run is
reproducible for a given rank count. It is *not* the same sample as a single process draws; set
``rollout.shard_over_ranks=false`` for that (tests comparing rank counts do).
"""

from __future__ import annotations

from typing import Optional

import torch

from trainer import distributed
from trainer.rollout.base import RolloutBackend, RolloutBatch, SamplingParams, concat_rollouts


def rank_seed(base: int, rank: int) -> int:
    """A 63-bit seed per (base, rank): FNV-1a over the two integers."""
    h = 1469598103934665603
    for x in (base, rank):
        h = ((h ^ (x & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


def shard_slices(n_prompts: int, world: int) -> list[range]:
    """Contiguous prompt ranges per rank (sizes differ by at most one; trailing ones may be empty)."""
    bounds = [len(part) for part in torch.arange(n_prompts).tensor_split(world)]
    out, start = [], 0
    for size in bounds:
        out.append(range(start, start + size))
        start += size
    return out


class ShardedRollout:
    """Wraps any rollout backend; on one rank it is a pass-through."""

    def __init__(self, inner: RolloutBackend, rank: int, world: int, device: torch.device):
        self.inner, self.rank, self.world, self.device = inner, rank, world, device

    def sync_weights(self, model) -> None:
        self.inner.sync_weights(model)

    def generate(self, prompts: list[str], params: SamplingParams, step: Optional[int] = None) -> RolloutBatch:
        if self.world == 1:
            return self.inner.generate(prompts, params)
        base = int(torch.randint(0, 2**62, (1,)).item())  # same draw on every rank
        mine = shard_slices(len(prompts), self.world)[self.rank]
        local = None
        if len(mine):
            with torch.random.fork_rng(devices=_cuda_devices()):
                torch.manual_seed(rank_seed(base, self.rank))
                local = self.inner.generate([prompts[i] for i in mine], params)
            local = _to(local, torch.device("cpu"))  # pickled through the process group
            local.group_ids = local.group_ids + mine.start  # local prompt index -> batch prompt index
        parts = [p for p in distributed.all_gather_object(local) if p is not None]
        return _to(concat_rollouts(parts), self.device)


def _cuda_devices() -> list[int]:
    return [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []


def _to(b: RolloutBatch, device: torch.device) -> RolloutBatch:
    """The token tensors on ``device``; ``group_ids`` stays on the CPU, as the backends return it."""
    return RolloutBatch(
        input_ids=b.input_ids.to(device),
        attention_mask=b.attention_mask.to(device),
        completion_mask=b.completion_mask.to(device),
        prompt_len=b.prompt_len,
        completions=b.completions,
        truncated=b.truncated.to(device),
        group_ids=b.group_ids.cpu(),
        rollout_logp=None if b.rollout_logp is None else b.rollout_logp.to(device),
    )
