"""Group-relative advantages (GRPO, arXiv 2402.03300; docs/algorithms.md §1.1).

A_i = (R_i − mean_g R) / (std_g R + eps), with the std optional (Dr.GRPO drops it) and taken
over the prompt's group or over the whole batch. Pure tensor function, vectorized over groups.
"""

from __future__ import annotations

import torch


def group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    std_normalize: bool = True,
    eps: float = 1e-6,
    *,
    unbiased: bool = True,
    scale: str = "group",
) -> torch.Tensor:
    """Advantages [B] for rewards [B] whose response i belongs to prompt group ``group_ids[i]``.

    ``scale="batch"`` divides by the std of the whole batch (still centred per group).
    A group of identical rewards gets advantage 0 (no signal), never NaN.
    """
    rewards = rewards.to(torch.float64)
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    n_groups = counts.numel()
    sums = torch.zeros(n_groups, dtype=rewards.dtype).index_add_(0, inverse, rewards)
    means = sums / counts
    centred = rewards - means[inverse]
    if not std_normalize:
        return centred.to(torch.float32)
    if scale == "batch":
        std = rewards.std(unbiased=unbiased) if rewards.numel() > 1 else rewards.new_zeros(())
        std = std.expand_as(centred)
    elif scale == "group":
        sq = torch.zeros(n_groups, dtype=rewards.dtype).index_add_(0, inverse, centred**2)
        dof = (counts - 1).clamp(min=1) if unbiased else counts
        std = (sq / dof).sqrt()[inverse]
    else:
        raise ValueError(f"algorithm.advantage.scale={scale!r}: must be group or batch")
    # centred is exactly 0 wherever std is 0, so a uniform group is 0 even with eps = 0 (not 0/0)
    return torch.where(centred == 0, torch.zeros_like(centred), centred / (std + eps)).to(torch.float32)
