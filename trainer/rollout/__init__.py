"""Rollout backends behind one interface; chosen by ``rollout.backend``."""

from trainer.rollout.base import RolloutBackend, RolloutBatch, SamplingParams, build_rollout

__all__ = ["RolloutBackend", "RolloutBatch", "SamplingParams", "build_rollout"]
