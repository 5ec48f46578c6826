"""Tasks with verifiable rewards, built from ``TaskConfig``."""

from __future__ import annotations

from trainer.tasks.base import Example, Task

__all__ = ["Example", "Task", "build_task"]


def build_task(cfg) -> Task:
    """``cfg`` is a ``trainer.config.TaskConfig``; imports stay lazy so each task is optional."""
    task = _build(cfg)
    task.format_reward = cfg.format_reward
    return task


def _build(cfg) -> Task:
    name = getattr(cfg.name, "value", cfg.name)
    if name == "arithmetic":
        from trainer.tasks.arithmetic import ArithmeticTask

        a = cfg.arithmetic
        return ArithmeticTask(
            seed=cfg.seed, n_train=cfg.n_train, n_eval=cfg.n_eval,
            min_operand=a.min_operand, max_operand=a.max_operand, ops=tuple(a.ops),
        )
    if name == "knights_knaves":
        from trainer.tasks.knights_knaves import KnightsKnavesTask

        k = cfg.knights_knaves
        return KnightsKnavesTask(
            seed=cfg.seed, n_train=cfg.n_train, n_eval=cfg.n_eval,
            min_people=k.min_people, max_people=k.max_people, style=k.style,
        )
    if name == "jsonl":
        from trainer.tasks import verifier
        from trainer.tasks.jsonl import JsonlTask

        j = cfg.jsonl
        return JsonlTask(
            path=j.path, eval_path=j.eval_path, prompt_key=j.prompt_key, answer_key=j.answer_key,
            solution_key=j.solution_key, eval_fraction=j.eval_fraction, seed=cfg.seed,
            max_examples=j.max_examples, prompt_template=j.prompt_template,
            verifier=verifier.resolve(getattr(cfg.verifier, "value", cfg.verifier)),
            verifier_workers=cfg.verifier_workers, verifier_timeout_s=cfg.verifier_timeout_s,
        )
    raise ValueError(f"task.name={name!r}: available tasks are arithmetic, knights_knaves, jsonl")
