"""A scored rollout batch: everything an update needs, per response and per token.

Reward-balanced buffering keeps these across steps, so they can be sliced (``select``) and
stacked (``concat_scored``) with prompts re-padded; every per-token tensor is completion-aligned.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

from trainer.rollout.base import RolloutBatch, concat_rollouts, pad_completion


@dataclass
class ScoredBatch:
    rollout: RolloutBatch
    rewards: torch.Tensor  # [B] task reward (accuracy is computed from it)
    correct: torch.Tensor  # [B] bool: reward ≥ the correctness threshold
    seq_advantages: torch.Tensor  # [B] group-relative advantage, before token-level weights
    advantages: torch.Tensor  # [B,T] the advantage each token's loss uses (AR, NTHR applied)
    old_logp: torch.Tensor  # [B,T] π_old of sampled tokens (tempered), no grad
    ref_logp: Optional[torch.Tensor]  # [B,T] π_ref, only when the KL is on
    loss_mask: torch.Tensor  # [B,T] completion mask, minus truncated rows if masked
    sampled_at: torch.Tensor  # [B] long: the step that sampled each response

    @property
    def size(self) -> int:
        return self.rewards.numel()

    @property
    def group_ids(self) -> torch.Tensor:
        return self.rollout.group_ids

    def select(self, idx: torch.Tensor) -> "ScoredBatch":
        return ScoredBatch(
            rollout=self.rollout.select(idx),
            rewards=self.rewards[idx],
            correct=self.correct[idx],
            seq_advantages=self.seq_advantages[idx],
            advantages=self.advantages[idx],
            old_logp=self.old_logp[idx],
            ref_logp=None if self.ref_logp is None else self.ref_logp[idx],
            loss_mask=self.loss_mask[idx],
            sampled_at=self.sampled_at[idx],
        )

    def with_group_ids(self, group_ids: torch.Tensor) -> "ScoredBatch":
        """The same batch with other prompt-group ids (a new object; this one is left as it is)."""
        return dataclasses.replace(self, rollout=dataclasses.replace(self.rollout, group_ids=group_ids))


def concat_scored(parts: list[ScoredBatch]) -> ScoredBatch:
    """Stack batches (from different steps); token tensors are right-padded with mask 0."""
    if len(parts) == 1:
        return parts[0]
    rollout = concat_rollouts([p.rollout for p in parts])
    t = rollout.completion_mask.shape[1]

    def cat(name: str) -> torch.Tensor:
        return torch.cat([pad_completion(getattr(p, name), t) for p in parts])

    refs = [p.ref_logp for p in parts]
    return ScoredBatch(
        rollout=rollout,
        rewards=torch.cat([p.rewards for p in parts]),
        correct=torch.cat([p.correct for p in parts]),
        seq_advantages=torch.cat([p.seq_advantages for p in parts]),
        advantages=cat("advantages"),
        old_logp=cat("old_logp"),
        ref_logp=None if any(r is None for r in refs) else cat("ref_logp"),
        loss_mask=cat("loss_mask"),
        sampled_at=torch.cat([p.sampled_at for p in parts]),
    )
