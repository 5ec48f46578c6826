"""The rollout interface: prompts in, a padded batch of G completions per prompt out.

Every backend (HF ``generate`` now, vLLM on GPU later) returns the same ``RolloutBatch``: the
trainer never knows which engine sampled. Log-probs from the engine are optional; the trainer
recomputes π_old itself and logs the mismatch when both exist.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)


class RolloutBackend(Protocol):
    def generate(self, prompts: list[str], params: SamplingParams) -> RolloutBatch: ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from ``model``'s current weights (no-op when it shares them)."""


def build_rollout(backend: str, model, tokenizer, device: torch.device) -> RolloutBackend:
    if backend == "hf":
        from trainer.rollout.hf import HFRollout

        return HFRollout(model, tokenizer, device)
    raise ValueError(f"rollout.backend={backend!r}: available backends are ['hf']")
