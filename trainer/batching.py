"""How a rollout batch is cut into optimizer mini-batches (ALGORITHMS.md §5).

A registry of pure index functions selected by ``batching.mode``; the cancellation paper shows
this choice changes results, so it is a first-class, logged knob rather than an accident.
"""

from __future__ import annotations

from typing import Callable

import torch

MINIBATCHERS: dict[str, Callable[..., list[torch.Tensor]]] = {}


def register_minibatcher(name: str):
    def wrap(fn):
        MINIBATCHERS[name] = fn
        return fn

    return wrap


def _chunks(order: torch.Tensor, size: int) -> list[torch.Tensor]:
    return list(order.split(size))


@register_minibatcher("shuffled")
def shuffled(group_ids, advantages, mini_batch_size, generator) -> list[torch.Tensor]:
    """Sample-level permutation that ignores groups (TRL's behaviour)."""
    return _chunks(torch.randperm(group_ids.numel(), generator=generator), mini_batch_size)


@register_minibatcher("query_preserved")
def query_preserved(group_ids, advantages, mini_batch_size, generator) -> list[torch.Tensor]:
    """Whole groups are shuffled and packed, so every rollout of a prompt shares a mini-batch."""
    groups = torch.unique(group_ids)
    sizes = torch.stack([(group_ids == g).sum() for g in groups])
    if (sizes != sizes[0]).any() or mini_batch_size % int(sizes[0]):
        raise ValueError(
            f"batching.mini_batch_size={mini_batch_size}: query_preserved needs a multiple of the group size "
            f"(group sizes {sorted(set(sizes.tolist()))})"
        )
    perm = groups[torch.randperm(groups.numel(), generator=generator)]
    order = torch.cat([torch.nonzero(group_ids == g).flatten() for g in perm])
    return _chunks(order, mini_batch_size)


def minibatch_indices(group_ids, advantages, mode: str, mini_batch_size: int, generator) -> list[torch.Tensor]:
    """Index tensors of each mini-batch, covering every response exactly once."""
    if mode not in MINIBATCHERS:
        raise ValueError(f"batching.mode={mode!r}: registered modes are {sorted(MINIBATCHERS)}")
    return MINIBATCHERS[mode](group_ids, advantages, mini_batch_size, generator)
