"""Rollout backends behind one interface (``trainer.rollout.base``); chosen by ``rollout.backend``."""

from __future__ import annotations

import torch

from trainer.rollout.base import RolloutBackend, RolloutBatch, SamplingParams

__all__ = ["RolloutBackend", "RolloutBatch", "SamplingParams", "build_rollout"]


def build_rollout(
    backend: str, model, tokenizer, device: torch.device, *, model_dir=None, **vllm_kwargs
) -> RolloutBackend:
    """HF ``generate`` on the training model, or a colocated vLLM engine started from ``model_dir``
    (the policy's checkpoint) that takes the trainer's weights after each update."""
    if backend == "hf":
        from trainer.rollout.hf import HFRollout

        return HFRollout(model, tokenizer, device)
    if backend == "vllm":
        from trainer.rollout.vllm_engine import VLLMRollout

        if model_dir is None:
            raise ValueError("rollout.backend=vllm starts its engine from the policy's checkpoint: pass model_dir")
        return VLLMRollout(model_dir, tokenizer, device, **vllm_kwargs)
    raise ValueError(f"rollout.backend={backend!r}: available backends are ['hf', 'vllm']")
