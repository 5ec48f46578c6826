"""The rollout interface: prompts in, a padded batch of G completions per prompt out.

Every backend (HF ``generate``, vLLM) returns the same ``RolloutBatch``: the trainer never knows
which engine sampled. Log-probs from the engine are optional; the trainer
recomputes π_old itself and logs the mismatch when both exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

import torch


@dataclass(frozen=True)
class SamplingParams:
    n: int
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False
    logprobs: bool = False  # also return the sampled tokens' log-probs (tempered π) as rollout_logp


@dataclass
class RolloutBatch:
    input_ids: torch.Tensor  # [B, P+T] left-padded prompt, then completion, right-padded
    attention_mask: torch.Tensor  # [B, P+T]
    completion_mask: torch.Tensor  # [B, T] 1 on completion tokens up to and including EOS
    prompt_len: int  # P: completion tokens start at this column
    completions: list[str]  # decoded completions (special tokens stripped)
    truncated: torch.Tensor  # [B] bool: hit max_new_tokens without EOS
    group_ids: torch.Tensor  # [B] index of the prompt each response answers
    rollout_logp: Optional[torch.Tensor] = None  # [B, T] engine log-probs, if the engine gives them
    sampler_stats: dict = field(default_factory=dict)  # metrics of how it was sampled (async: staleness, waits)

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)

    @property
    def completion_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_len :]

    def select(self, idx: torch.Tensor) -> "RolloutBatch":
        """The rows ``idx`` (same padding layout)."""
        rows = idx.tolist()
        return RolloutBatch(
            input_ids=self.input_ids[idx],
            attention_mask=self.attention_mask[idx],
            completion_mask=self.completion_mask[idx],
            prompt_len=self.prompt_len,
            completions=[self.completions[i] for i in rows],
            truncated=self.truncated[idx],
            group_ids=self.group_ids[idx],
            rollout_logp=None if self.rollout_logp is None else self.rollout_logp[idx],
            sampler_stats=self.sampler_stats,
        )


def pad_completion(x: torch.Tensor, width: int, value: float = 0) -> torch.Tensor:
    """Right-pad a [B,T] completion-aligned tensor to ``width`` columns."""
    return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)


def concat_rollouts(batches: list[RolloutBatch]) -> RolloutBatch:
    """Stack batches sampled at different steps: prompts re-left-padded, completions re-right-padded.

    Padding positions carry attention 0, so their token id (0) never matters.
    """
    if len(batches) == 1:
        return batches[0]
    p = max(b.prompt_len for b in batches)
    t = max(b.input_ids.shape[1] - b.prompt_len for b in batches)

    def relayout(b: RolloutBatch, x: torch.Tensor) -> torch.Tensor:
        left = p - b.prompt_len
        right = t - (x.shape[1] - b.prompt_len)
        return torch.nn.functional.pad(x, (left, right), value=0)

    logps = [b.rollout_logp for b in batches]
    return RolloutBatch(
        input_ids=torch.cat([relayout(b, b.input_ids) for b in batches]),
        attention_mask=torch.cat([relayout(b, b.attention_mask) for b in batches]),
        completion_mask=torch.cat([pad_completion(b.completion_mask, t) for b in batches]),
        prompt_len=p,
        completions=[c for b in batches for c in b.completions],
        truncated=torch.cat([b.truncated for b in batches]),
        group_ids=torch.cat([b.group_ids for b in batches]),
        rollout_logp=None if any(x is None for x in logps) else torch.cat([pad_completion(x, t) for x in logps]),
    )


class RolloutBackend(Protocol):
    def generate(self, prompts: list[str], params: SamplingParams, step: Optional[int] = None) -> RolloutBatch:
        """``params.n`` completions per prompt. ``step``: the training step the batch is for (a lagged
        sampler, ``trainer.rollout.lagged``, samples it from older weights); None for an eval batch,
        always from the current weights. Synchronous backends ignore it."""

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from ``model``'s current weights (no-op when it shares them)."""

