"""ArithmeticTask: seeded, disjoint splits, exact answers, a verifier that never crashes."""

import operator
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.tasks.arithmetic import ArithmeticTask
from trainer.tasks.base import Example

PROMPT = re.compile(r"(-?[0-9]+)([+*-])(-?[0-9]+)=")
PY_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def _example(answer: str) -> Example:
    return Example(prompt="?", answer=answer, solution=answer)


def _prompts(examples):
    return [e.prompt for e in examples]


def test_name():
    assert ArithmeticTask(n_train=1, n_eval=1).name == "arithmetic"


def test_split_sizes():
    task = ArithmeticTask(n_train=30, n_eval=7)
    assert (len(task.train), len(task.eval)) == (30, 7)


def test_same_seed_gives_identical_examples():
    a, b = ArithmeticTask(seed=3, n_train=50, n_eval=10), ArithmeticTask(seed=3, n_train=50, n_eval=10)
    assert a.train == b.train and a.eval == b.eval


def test_different_seeds_give_different_examples():
    assert _prompts(ArithmeticTask(seed=0, n_train=50).train) != _prompts(ArithmeticTask(seed=1, n_train=50).train)


def test_global_random_state_is_untouched():
    random.seed(123)
    before = random.getstate()
    ArithmeticTask(n_train=100, n_eval=10)
    assert random.getstate() == before


def test_prompts_are_distinct_within_and_across_splits():
    task = ArithmeticTask(n_train=2000, n_eval=200)
    prompts = _prompts(task.train) + _prompts(task.eval)
    assert len(set(prompts)) == len(prompts) == 2200


def test_eval_split_does_not_depend_on_n_train():
    assert ArithmeticTask(seed=5, n_train=10, n_eval=20).eval == ArithmeticTask(seed=5, n_train=500, n_eval=20).eval


def test_single_possible_prompt_has_exact_format():
    task = ArithmeticTask(n_train=1, n_eval=0, min_operand=7, max_operand=7, ops=("*",))
    (ex,) = task.train
    assert (ex.prompt, ex.answer, ex.solution) == ("7*7=", "49", "49")


@pytest.mark.parametrize("ops", [("+",), ("-",), ("*",), ("+", "-", "*")])
def test_answers_equal_python_arithmetic_on_the_prompt(ops):
    task = ArithmeticTask(seed=1, n_train=300, n_eval=30, min_operand=-20, max_operand=20, ops=ops)
    for ex in task.train + task.eval:
        a, op, b = PROMPT.fullmatch(ex.prompt).groups()
        assert op in ops
        assert -20 <= int(a) <= 20 and -20 <= int(b) <= 20
        assert ex.answer == ex.solution == str(PY_OPS[op](int(a), int(b)))


def test_subtraction_produces_negative_answers():
    task = ArithmeticTask(n_train=100, n_eval=0, max_operand=9, ops=("-",))
    assert any(ex.answer.startswith("-") for ex in task.train)


def test_exact_capacity_is_enumerated_completely():
    # operands {0,1} with "+" allow exactly 4 prompts
    task = ArithmeticTask(n_train=3, n_eval=1, min_operand=0, max_operand=1, ops=("+",))
    assert sorted(_prompts(task.train + task.eval)) == ["0+0=", "0+1=", "1+0=", "1+1="]


def test_too_few_distinct_prompts_raises_with_the_numbers():
    with pytest.raises(ValueError, match=r"only 4 distinct prompts.*= 5"):
        ArithmeticTask(n_train=3, n_eval=2, min_operand=0, max_operand=1, ops=("+",))


@pytest.mark.parametrize("kwargs", [{"ops": ("/",)}, {"ops": ()}, {"min_operand": 5, "max_operand": 4}])
def test_invalid_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        ArithmeticTask(n_train=1, n_eval=0, **kwargs)


@pytest.mark.parametrize(
    ("completion", "correct"),
    [
        ("42", True),
        (" 42", True),  # surrounding whitespace is stripped
        ("42 \n", True),
        ("42\n99", True),  # only the first line counts
        ("42\r\nrest", True),
        ("042", True),  # compared as an integer
        ("+42", False),  # only an optional leading '-' is allowed
        ("4 2", False),
        ("42.0", False),
        ("42abc", False),
        ("", False),
        ("   \n42", True),  # leading blank lines are stripped first
        ("-42", False),
        ("\u0664\u0662", False),  # Arabic-Indic "42": int() accepts it, we do not
        ("\uff14\uff12", False),  # full-width "42"
    ],
)
def test_verifier_on_tricky_completions_for_42(completion, correct):
    assert ArithmeticTask(n_train=1, n_eval=0).is_correct(completion, _example("42")) is correct


@pytest.mark.parametrize(("completion", "correct"), [("0", True), ("-0", True), ("000", True), ("-", False)])
def test_verifier_on_zero(completion, correct):
    assert ArithmeticTask(n_train=1, n_eval=0).is_correct(completion, _example("0")) is correct


@pytest.mark.parametrize(("completion", "correct"), [("-7", True), ("-07", True), ("7", False), ("--7", False)])
def test_verifier_on_negative_answer(completion, correct):
    assert ArithmeticTask(n_train=1, n_eval=0).is_correct(completion, _example("-7")) is correct


def test_verifier_handles_100k_digit_numbers_beyond_int_limit():
    task = ArithmeticTask(n_train=1, n_eval=0)
    huge = "1" + "0" * 99_999  # int() refuses strings over 4300 digits
    assert task.is_correct(huge, _example("42")) is False
    assert task.is_correct(huge, _example(huge)) is True
    assert task.is_correct("9" * 100_000, _example(huge)) is False


def test_generated_solutions_are_correct_and_off_by_one_is_not():
    task = ArithmeticTask(n_train=50, n_eval=10, ops=("+", "-", "*"))
    for ex in task.train + task.eval:
        assert task.reward(ex.solution, ex) == 1.0
        assert task.reward(str(int(ex.answer) + 1), ex) == 0.0


_TASK = ArithmeticTask(n_train=1, n_eval=0)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_reward_is_binary_and_verifier_never_raises_on_any_text(completion):
    assert isinstance(_TASK.is_correct(completion, _example("42")), bool)
    assert _TASK.reward(completion, _example("42")) in (0.0, 1.0)


@settings(max_examples=50, deadline=None)
@given(st.from_regex(r"-?[0-9]{1,20000}", fullmatch=True))
def test_reward_is_binary_and_verifier_never_raises_on_long_numbers(completion):
    assert isinstance(_TASK.is_correct(completion, _example("42")), bool)
    assert _TASK.reward(completion, _example(completion)) == 1.0
