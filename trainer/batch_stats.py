"""Statistics of a sampled batch: mixed groups, pass@k, and the rollout metrics of a step."""

from __future__ import annotations

import torch

from trainer.rollout import RolloutBatch


def group_chunks(group_ids: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Index chunks of about ``size`` rows that never split a group (rows of a group are contiguous)."""
    _, counts = torch.unique_consecutive(group_ids, return_counts=True)
    chunks, start, cur = [], 0, 0
    for c in counts.tolist():
        if cur and cur + c > size:
            chunks.append(torch.arange(start, start + cur))
            start, cur = start + cur, 0
        cur += c
    if cur:
        chunks.append(torch.arange(start, start + cur))
    return chunks


def mixed_rows(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """[B] bool: the response's group has more than one distinct reward."""
    _, inv = torch.unique(group_ids, return_inverse=True)
    n = int(inv.max()) + 1 if inv.numel() else 0
    lo = torch.full((n,), float("inf")).scatter_reduce(0, inv, rewards.float(), "amin")
    hi = torch.full((n,), float("-inf")).scatter_reduce(0, inv, rewards.float(), "amax")
    return (hi > lo)[inv]


def rollout_stats(batch: RolloutBatch, rewards: torch.Tensor, threshold: float) -> dict[str, float]:
    lengths = batch.completion_lengths().float()
    return {
        "train/reward": float(rewards.mean()),
        "train/accuracy": float((rewards >= threshold).float().mean()),
        "train/response_length": float(lengths.mean()),
        "train/truncated_frac": float(batch.truncated.float().mean()),
        "train/mixed_group_frac": mixed_group_fraction(rewards, batch.group_ids),
    }


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 − C(n−c,k)/C(n,k)."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mixed_group_fraction(rewards: torch.Tensor, group_ids: torch.Tensor) -> float:
    """Fraction of prompts whose responses got different rewards (the only ones GRPO learns from)."""
    groups = torch.unique(group_ids)
    mixed = sum(int(rewards[group_ids == g].unique().numel() > 1) for g in groups)
    return mixed / max(len(groups), 1)
