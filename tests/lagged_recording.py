"""Shared by the lagged-rollout tests: run a trainer whose rollout is a ``LaggedRollout`` and keep
what the reference needs (``tests/test_async_rollout.py``, ``tests/test_async_vllm.py``)."""

from __future__ import annotations

from typing import Callable, Optional

from trainer.rollout.lagged import weights_of


def run_recording(trainer, k: int, steps: int, between: Optional[Callable[[int], None]] = None):
    """Steps 1..``steps``; returns (weights snapshots after 0..steps steps, [(step, batch trained on)]).
    Checks each step's logged staleness; ``between(step)`` runs after each step (e.g. an eval)."""
    snapshots, batches = [weights_of(trainer.policy)], []
    generate = trainer.rollout.generate

    def recording(prompts, params, step=None):
        batch = generate(prompts, params, step=step)
        if step is not None:
            batches.append((step, batch))
        return batch

    trainer.rollout.generate = recording
    try:
        for step in range(1, steps + 1):
            m = trainer.step(trainer.task.train, step)
            snapshots.append(weights_of(trainer.policy))
            assert m["async/staleness"] == min(k, step - 1)
            if between is not None:
                between(step)
    finally:
        trainer.rollout.close()
    return snapshots, batches
