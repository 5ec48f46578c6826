"""task.format_reward: a readable wrong answer earns partial credit; rewards stay binary at 0."""

import pytest

from trainer.config import TaskConfig, TaskName
from trainer.tasks import build_task


def _task(name: str, format_reward: float):
    return build_task(TaskConfig(name=TaskName(name), n_train=20, n_eval=5, format_reward=format_reward))


@pytest.mark.parametrize("fr", [0.0, 0.1])
def test_arithmetic_three_reward_levels(fr):
    task = _task("arithmetic", fr)
    ex = task.train[0]
    wrong = str(int(ex.answer) + 1)
    assert task.reward(ex.answer, ex) == 1.0
    assert task.reward(wrong, ex) == fr
    assert task.reward("no number here", ex) == 0.0


def test_knights_knaves_readable_wrong_assignment_gets_format_reward():
    task = _task("knights_knaves", 0.25)
    ex = task.train[0]
    names = ex.meta["names"]
    truth = dict(zip(names, ex.meta["assignment"]))
    flipped = truth | {names[0]: not truth[names[0]]}
    # the solver's own format ("A knight,B knave"), with the first person's role flipped
    wrong = ",".join(f"{n} {'knight' if flipped[n] else 'knave'}" for n in names)
    assert wrong != ex.solution
    assert task.reward(ex.solution, ex) == 1.0
    assert task.reward(wrong, ex) == 0.25
    assert task.reward("gibberish", ex) == 0.0


def test_format_reward_default_keeps_rewards_binary():
    task = _task("arithmetic", 0.0)
    rewards = {task.reward(c, ex) for ex in task.train for c in (ex.answer, "7", "x")}
    assert rewards <= {0.0, 1.0}
