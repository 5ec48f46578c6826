"""Knights-and-Knaves: the brute-force solver, the generator, both renderings, the parser."""

import itertools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.tasks.base import Example
from trainer.tasks.knights_knaves import (
    And,
    Iff,
    Implies,
    IsKnave,
    IsKnight,
    KnightsKnavesTask,
    Not,
    Or,
    format_compact,
    format_natural,
    parse_assignment,
    solve,
)

A, B, C = 0, 1, 2

# --- solve on hand-solved puzzles --------------------------------------------------------


def test_two_people_and():
    # A: "B is a knave". B: "A and B are knights".
    # If B were a knight, A and B would both be knights, but then A's "B is a knave" is a
    # knight's lie. So B is a knave; then A's claim is true, so A is a knight; B's claim
    # "A and B are knights" is false (B is a knave), as a knave's must be.
    statements = (IsKnave(B), And(IsKnight(A), IsKnight(B)))
    assert solve(2, statements) == [(True, False)]


def test_three_people_chain():
    # A: "B is a knight". B: "C is a knave". C: "A and C are knights".
    # If C is a knight, A is a knight, so B is a knight, so C is a knave: contradiction.
    # So C is a knave: B's "C is a knave" is true, so B is a knight; A's "B is a knight"
    # is true, so A is a knight; C's claim is false (C is a knave), consistent.
    statements = (IsKnight(B), IsKnave(C), And(IsKnight(A), IsKnight(C)))
    assert solve(3, statements) == [(True, True, False)]


def test_implication_and_negation():
    # A: "If A is a knight then B is a knave". B: "A is not a knight".
    # If A were a knave, "if A is a knight then ..." would be vacuously true: a knave's
    # truth, contradiction. So A is a knight, the implication is true, so B is a knave;
    # B's "A is not a knight" is false, consistent.
    statements = (Implies(IsKnight(A), IsKnave(B)), Not(IsKnight(A)))
    assert solve(2, statements) == [(True, False)]


def test_three_people_or_and_iff():
    # A: "B is a knave or C is a knave". B: "A is a knight iff C is a knight". C: "A is a knave".
    # C's claim makes C a knight exactly when A is a knave, so C = not A and B's
    # "A iff C" is false whatever A is: B is a knave. Then A's "B is a knave or ..." is
    # true, so A is a knight, and C = not A is a knave.
    statements = (Or(IsKnave(B), IsKnave(C)), Iff(IsKnight(A), IsKnight(C)), IsKnave(A))
    assert solve(3, statements) == [(True, False, False)]


def test_two_solutions_are_both_reported():
    # A: "B is a knight". B: "A is a knight". Both knights or both knaves fits;
    # a mixed pair would make someone a truthful knave or a lying knight.
    assert sorted(solve(2, (IsKnight(B), IsKnight(A)))) == [(False, False), (True, True)]


def test_no_solution_is_reported_as_empty():
    # A: "If A is a knight then B is a knave". B: "A is a knight iff B is a knave".
    # A knave would utter a vacuously true implication, so A is a knight and B a knave;
    # but then B's "A knight iff B knave" (true iff true) is true: a truthful knave.
    statements = (Implies(IsKnight(A), IsKnave(B)), Iff(IsKnight(A), IsKnave(B)))
    assert solve(2, statements) == []


def test_solve_rejects_a_statement_count_mismatch():
    with pytest.raises(ValueError):
        solve(3, (IsKnight(A), IsKnight(B)))


# --- rendering -------------------------------------------------------------------------


def test_compact_notation_of_each_statement_kind():
    names = ("A", "B")
    assert format_compact(IsKnave(B), names) == "B knave"
    assert format_compact(Not(IsKnight(A)), names) == "!A knight"
    assert format_compact(And(IsKnight(A), IsKnight(B)), names) == "A knight&B knight"
    assert format_compact(Or(IsKnave(A), IsKnight(B)), names) == "A knave|B knight"
    assert format_compact(Implies(IsKnight(A), IsKnave(B)), names) == "A knight>B knave"
    assert format_compact(Iff(IsKnight(A), IsKnave(B)), names) == "A knight=B knave"
    assert format_compact(Not(Or(IsKnave(A), IsKnight(B))), names) == "!(A knave|B knight)"


def test_natural_phrasing_of_each_statement_kind():
    names = ("Zoey", "Oliver")
    assert format_natural(IsKnave(B), names) == "Oliver is a knave"
    assert format_natural(Not(IsKnight(A)), names) == "Zoey is not a knight"
    assert format_natural(And(IsKnight(A), IsKnave(B)), names) == "Zoey is a knight and Oliver is a knave"
    assert format_natural(Or(IsKnave(A), IsKnight(B)), names) == "Zoey is a knave or Oliver is a knight"
    assert format_natural(Implies(IsKnight(A), IsKnave(B)), names) == "if Zoey is a knight then Oliver is a knave"
    assert (
        format_natural(Iff(IsKnight(A), IsKnave(B)), names) == "Zoey is a knight if and only if Oliver is a knave"
    )


# --- the generator ----------------------------------------------------------------------

_LEAF = r"[A-Z] (?:knight|knave)"
_CLAIM = re.compile(rf"!?{_LEAF}(?:[&|>=]!?{_LEAF})?")


def _compact_claim_value(claim: str, knights: dict[str, bool]) -> bool:
    """An evaluator of the compact notation written from the docstring grammar, not the AST."""
    assert _CLAIM.fullmatch(claim), claim
    expr = re.sub(r"!([A-Z]) (knight|knave)", r"(not \1 \2)", claim)
    expr = re.sub(r"([A-Z]) knight", r"(K['\1'])", expr)
    expr = re.sub(r"([A-Z]) knave", r"(not K['\1'])", expr)
    # on booleans "<=" is material implication and "==" is iff
    expr = expr.replace("&", " and ").replace("|", " or ").replace("=", " == ").replace(">", " <= ")
    return bool(eval(expr, {"K": knights}))


def _solve_compact_prompt(prompt: str) -> list[dict[str, bool]]:
    assert prompt.endswith("?")
    said = dict(part.split(":") for part in prompt[:-1].split(";"))
    names = list(said)
    solutions = []
    for values in itertools.product((True, False), repeat=len(names)):
        knights = dict(zip(names, values))
        if all(_compact_claim_value(said[n], knights) == knights[n] for n in names):
            solutions.append(knights)
    return solutions


@pytest.fixture(scope="module")
def compact_task():
    return KnightsKnavesTask(seed=7, n_train=150, n_eval=30, min_people=2, max_people=4)


@pytest.fixture(scope="module")
def natural_task():
    return KnightsKnavesTask(seed=7, n_train=60, n_eval=20, min_people=2, max_people=4, style="natural")


def test_name_and_split_sizes(compact_task):
    assert compact_task.name == "knights_knaves"
    assert (len(compact_task.train), len(compact_task.eval)) == (150, 30)


def test_every_compact_prompt_has_exactly_the_stored_solution(compact_task):
    # Re-solved from the prompt text alone by an independent brute force.
    for ex in compact_task.train + compact_task.eval:
        (only,) = _solve_compact_prompt(ex.prompt)
        assert only == dict(zip(ex.meta["names"], ex.meta["assignment"]))


def test_every_generated_puzzle_is_uniquely_solvable_by_solve(natural_task):
    for ex in natural_task.train + natural_task.eval:
        assert solve(ex.meta["n_people"], ex.meta["statements"]) == [ex.meta["assignment"]]


def _role(knight: bool) -> str:
    return "knight" if knight else "knave"


def test_compact_solution_text_format(compact_task):
    for ex in compact_task.train:
        expected = ",".join(f"{n} {_role(k)}" for n, k in zip(ex.meta["names"], ex.meta["assignment"]))
        assert ex.solution == ex.answer == expected


def test_people_counts_stay_in_range(compact_task):
    counts = {ex.meta["n_people"] for ex in compact_task.train + compact_task.eval}
    assert counts <= {2, 3, 4} and len(counts) > 1


@pytest.mark.parametrize("task_name", ["compact_task", "natural_task"])
def test_solution_is_correct_and_any_flipped_person_is_not(task_name, request):
    task = request.getfixturevalue(task_name)
    for ex in task.train + task.eval:
        assert task.reward(ex.solution, ex) == 1.0
        names, truth = ex.meta["names"], ex.meta["assignment"]
        for i in range(len(names)):
            flipped = dict(zip(names, truth)) | {names[i]: not truth[i]}
            wrong = ",".join(f"{n} {_role(k)}" for n, k in flipped.items())
            assert task.reward(wrong, ex) == 0.0


def test_natural_prompt_reads_like_the_original_dataset(natural_task):
    for ex in natural_task.train + natural_task.eval:
        names = ex.meta["names"]
        assert ex.prompt.startswith(
            "A very special island is inhabited only by knights and knaves. "
            "Knights always tell the truth, and knaves always lie. "
            f"You meet {len(names)} inhabitants: "
        )
        assert ex.prompt.endswith(" So who is a knight and who is a knave?")
        assert all(name in ex.prompt for name in names)
        pairs = zip(names, ex.meta["assignment"])
        assert ex.solution == "\n".join(f"({i}) {n} is a {_role(k)}" for i, (n, k) in enumerate(pairs, start=1))


@pytest.mark.parametrize("style", ["compact", "natural"])
def test_same_seed_gives_identical_puzzles(style):
    a = KnightsKnavesTask(seed=11, n_train=40, n_eval=10, style=style)
    b = KnightsKnavesTask(seed=11, n_train=40, n_eval=10, style=style)
    assert [(e.prompt, e.solution) for e in a.train + a.eval] == [(e.prompt, e.solution) for e in b.train + b.eval]


def test_different_seeds_give_different_puzzles():
    a = KnightsKnavesTask(seed=0, n_train=40, n_eval=0)
    b = KnightsKnavesTask(seed=1, n_train=40, n_eval=0)
    assert [e.prompt for e in a.train] != [e.prompt for e in b.train]


def test_global_random_state_is_untouched():
    random.seed(123)
    before = random.getstate()
    KnightsKnavesTask(n_train=30, n_eval=5, style="natural")
    assert random.getstate() == before


@pytest.mark.parametrize("style", ["compact", "natural"])
def test_prompts_are_distinct_within_and_across_splits(style):
    task = KnightsKnavesTask(seed=2, n_train=500, n_eval=100, style=style)
    prompts = [e.prompt for e in task.train + task.eval]
    assert len(set(prompts)) == len(prompts) == 600


def test_eval_split_does_not_depend_on_n_train():
    small = KnightsKnavesTask(seed=4, n_train=5, n_eval=20)
    large = KnightsKnavesTask(seed=4, n_train=300, n_eval=20)
    assert [e.prompt for e in small.eval] == [e.prompt for e in large.eval]


def test_requesting_more_puzzles_than_exist_raises():
    # 2 people admit only a few hundred distinct uniquely solvable puzzles.
    with pytest.raises(ValueError, match="5000"):
        KnightsKnavesTask(n_train=5000, n_eval=0, min_people=2, max_people=2)


@pytest.mark.parametrize(
    "kwargs", [{"style": "fancy"}, {"min_people": 1}, {"min_people": 3, "max_people": 2}, {"max_people": 99}]
)
def test_invalid_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        KnightsKnavesTask(n_train=1, n_eval=0, **kwargs)


# --- the parser and the verifier -----------------------------------------------------------

NAT = ("Zoey", "Oliver")
ABC = ("A", "B")


@pytest.mark.parametrize(
    "text",
    [
        "A knight,B knave",
        "A knight, B knave",
        "B knave,A knight",
        "A is a knight and B is a knave",
        "A Knight\nB KNAVE",
    ],
)
def test_parser_reads_compact_style_answers(text):
    assert parse_assignment(text, ABC) == {"A": True, "B": False}


@pytest.mark.parametrize(
    "text",
    [
        "(1) Zoey is a knight\n(2) Oliver is a knave",
        "Zoey is a knight, and Oliver is a knave.",
        "Oliver is a knave. Zoey is a Knight.",
        "Zoey knight,Oliver knave",
        "Suppose Zoey is a knave... contradiction. So Zoey is a knight and Oliver is a knave.",
    ],
)
def test_parser_reads_natural_style_answers_last_mention_wins(text):
    assert parse_assignment(text, NAT) == {"Zoey": True, "Oliver": False}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Zoey is a knight",  # Oliver missing
        "Zoey is not a knight, Oliver is a knave",  # a negation names no role
        "Zoey is a knightly fellow, Oliver is a knave",
        "zoey is a knight, Oliver is a knave",  # names are case-sensitive
    ],
)
def test_parser_returns_none_when_someone_is_missing(text):
    assert parse_assignment(text, NAT) is None


def test_parser_does_not_read_the_article_a_as_person_a():
    assert parse_assignment("a knight,B knave", ABC) is None


def _kk_example(names, assignment):
    return Example(prompt="?", answer="", solution="", meta={"names": names, "assignment": assignment})


def test_verifier_rejects_missing_and_contradicting_answers():
    task = KnightsKnavesTask(n_train=1, n_eval=0)
    ex = _kk_example(NAT, (True, False))
    assert task.is_correct("Zoey is a knight and Oliver is a knave", ex)
    assert not task.is_correct("Zoey is a knight", ex)
    assert not task.is_correct("Zoey is a knight and Oliver is a knight", ex)
    assert not task.is_correct("Zoey is a knight, Oliver is a knave. No: Oliver is a knight.", ex)


_TASK = KnightsKnavesTask(n_train=1, n_eval=0)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.sampled_from([NAT, ABC]))
def test_reward_never_raises_on_arbitrary_text(completion, names):
    ex = _kk_example(names, (True, False))
    assert isinstance(_TASK.is_correct(completion, ex), bool)
    assert _TASK.reward(completion, ex) in (0.0, 1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["A", "B", " ", "knight", "knave", "is a ", ",", "\n", "!"]), max_size=30))
def test_verifier_never_raises_on_answer_like_noise(pieces):
    assert isinstance(_TASK.is_correct("".join(pieces), _kk_example(ABC, (True, False))), bool)
