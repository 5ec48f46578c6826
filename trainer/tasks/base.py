"""The task contract: examples with a verifiable answer and a solver-written solution.

A task is data plus a verifier. The trainer never looks inside a task: it takes
``Example.prompt`` to generate from, ``Example.solution`` to warm-start on (SFT), and
``Task.reward`` to score a completion. Rewards never raise: any string a model can emit
gets a float.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


def correct_threshold(task_cfg) -> float:
    """The reward at or above which a response counts as correct (``task.correct_threshold``; null = 1.0)."""
    return 1.0 if task_cfg.correct_threshold is None else float(task_cfg.correct_threshold)


@dataclass(frozen=True)
class Example:
    prompt: str
    """Text the policy continues (the chat template, if any, is applied by the rollout, not here)."""
    answer: str
    """Canonical gold answer the verifier compares against."""
    solution: str
    """A correct completion written by the task's solver: the SFT warm-start target."""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Task-specific extras (e.g. the K&K assignment); never needed by the trainer."""


class Rewards(NamedTuple):
    """A batch's rewards and the ``train/*`` counts of how scoring went (``reward_timeouts``, ...)."""

    values: list[float]
    stats: dict[str, float]


class Task:
    """Base class: subclasses fill ``train``/``eval`` deterministically and implement ``is_correct``."""

    name: str = "task"
    train: list[Example]
    eval: list[Example]
    format_reward: float = 0.0
    """Reward of a well-formatted wrong answer; 0 keeps rewards binary (``task.format_reward``)."""

    def is_correct(self, completion: str, example: Example) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def is_well_formatted(self, completion: str, example: Example) -> bool:  # pragma: no cover - abstract
        """Whether the completion states an answer the verifier can read (right or wrong)."""
        raise NotImplementedError

    def reward(self, completion: str, example: Example) -> float:
        """1.0 if correct, ``format_reward`` if a readable wrong answer, else 0.0.

        A verifier error counts as unreadable, never as a crash.
        """
        try:
            if self.is_correct(completion, example):
                return 1.0
            if self.format_reward and self.is_well_formatted(completion, example):
                return self.format_reward
        except Exception:
            pass
        return 0.0

    def rewards(self, completions: list[str], examples: list[Example]) -> Rewards:
        """The rewards of a batch (one example per completion); tasks with a costly verifier batch it."""
        return Rewards([self.reward(c, e) for c, e in zip(completions, examples)], {})
