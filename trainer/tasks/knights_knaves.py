"""Knights-and-Knaves (K&K) logic puzzles, the benchmark of the Lopti paper.

Knights always tell the truth, knaves always lie; each inhabitant makes one statement and
the policy must say who is what. The statement grammar follows the K&K dataset of
Xie et al. 2024 ("On Memorization of Large Language Models in Logical Reasoning"):
a leaf "X is a knight" / "X is a knave" (a speaker never says "I am a knave", which is
trivially contradictory), its negation "X is not a knight", or two distinct leaves joined
by and / or / if-then / if-and-only-if. Only puzzles with exactly one consistent
assignment are kept, so the answer is checkable by brute force.

Two renderings of the same puzzle:

* ``style="natural"``: the English of the original dataset, with names (Zoey, Oliver...),
  answer ``"(1) Zoey is a knight\\n(2) Oliver is a knave"``.
* ``style="compact"``: for a tiny char-level model. People are ``A``, ``B``, ``C``...;
  statements are separated by ``;``, each is ``speaker:claim``, and the prompt ends in ``?``::

      prompt := NAME ":" expr (";" NAME ":" expr)* "?"
      expr   := unary | unary OP unary
      unary  := "!" atom | atom               ! = not
      atom   := NAME " knight" | NAME " knave" | "(" expr ")"
      OP     := "&" and | "|" or | ">" if-then | "=" if-and-only-if

  e.g. ``"A:B knave;B:A knight&B knight?"`` (A says B is a knave; B says A and B are
  both knights), answer ``"A knight,B knave"``. Leaves reuse the words of the answer so
  the model copies a shape it must produce anyway. Parentheses never appear in generated
  puzzles (operands are leaves) but keep deeper hand-written statements unambiguous.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from typing import Union

from trainer.tasks.base import Example, Task


@dataclass(frozen=True)
class IsKnight:
    person: int


@dataclass(frozen=True)
class IsKnave:
    person: int


@dataclass(frozen=True)
class Not:
    arg: Statement


@dataclass(frozen=True)
class And:
    left: Statement
    right: Statement


@dataclass(frozen=True)
class Or:
    left: Statement
    right: Statement


@dataclass(frozen=True)
class Implies:
    left: Statement
    right: Statement


@dataclass(frozen=True)
class Iff:
    left: Statement
    right: Statement


Statement = Union[IsKnight, IsKnave, Not, And, Or, Implies, Iff]
_BINARY = (And, Or, Implies, Iff)


def evaluate(statement: Statement, knights: tuple[bool, ...]) -> bool:
    """Truth value of ``statement`` when ``knights[i]`` says whether person i is a knight."""
    match statement:
        case IsKnight(p):
            return knights[p]
        case IsKnave(p):
            return not knights[p]
        case Not(a):
            return not evaluate(a, knights)
        case And(a, b):
            return evaluate(a, knights) and evaluate(b, knights)
        case Or(a, b):
            return evaluate(a, knights) or evaluate(b, knights)
        case Implies(a, b):
            return (not evaluate(a, knights)) or evaluate(b, knights)
        case Iff(a, b):
            return evaluate(a, knights) == evaluate(b, knights)
    raise TypeError(f"not a K&K statement: {statement!r}")


def solve(n_people: int, statements: tuple[Statement, ...] | list[Statement]) -> list[tuple[bool, ...]]:
    """All consistent assignments (True = knight), by brute force over the 2^n of them.

    An assignment is consistent iff every speaker's statement is true exactly when the
    speaker is a knight. Order: ``itertools.product((True, False), repeat=n_people)``.
    """
    if len(statements) != n_people:
        raise ValueError(f"solve: {len(statements)} statements for n_people={n_people}; need one each")
    return [
        knights
        for knights in itertools.product((True, False), repeat=n_people)
        if all(evaluate(s, knights) == knights[i] for i, s in enumerate(statements))
    ]


# --- rendering --------------------------------------------------------------------------

_COMPACT_OPS = {And: "&", Or: "|", Implies: ">", Iff: "="}


def format_compact(statement: Statement, names: list[str] | tuple[str, ...]) -> str:
    """The compact notation of the module docstring (binary operands are parenthesised)."""

    def operand(s: Statement) -> str:
        text = format_compact(s, names)
        return f"({text})" if isinstance(s, _BINARY) else text

    match statement:
        case IsKnight(p):
            return f"{names[p]} knight"
        case IsKnave(p):
            return f"{names[p]} knave"
        case Not(a):
            return "!" + operand(a)
        case And(a, b) | Or(a, b) | Implies(a, b) | Iff(a, b):
            return operand(a) + _COMPACT_OPS[type(statement)] + operand(b)
    raise TypeError(f"not a K&K statement: {statement!r}")


def format_natural(statement: Statement, names: list[str] | tuple[str, ...]) -> str:
    """English as in the original dataset: "Zoey is a knight and Oliver is a knave"."""

    def operand(s: Statement) -> str:
        text = format_natural(s, names)
        return f"({text})" if isinstance(s, _BINARY) else text

    match statement:
        case IsKnight(p):
            return f"{names[p]} is a knight"
        case IsKnave(p):
            return f"{names[p]} is a knave"
        case Not(IsKnight(p)):
            return f"{names[p]} is not a knight"
        case Not(IsKnave(p)):
            return f"{names[p]} is not a knave"
        case Not(a):
            return "it is not the case that " + operand(a)
        case And(a, b):
            return f"{operand(a)} and {operand(b)}"
        case Or(a, b):
            return f"{operand(a)} or {operand(b)}"
        case Implies(a, b):
            return f"if {operand(a)} then {operand(b)}"
        case Iff(a, b):
            return f"{operand(a)} if and only if {operand(b)}"
    raise TypeError(f"not a K&K statement: {statement!r}")


NAMES = (
    "Zoey", "Oliver", "Emma", "Liam", "Mia", "Noah", "Ava", "Ethan",
    "Sophia", "Lucas", "Harper", "Jack", "Grace", "Owen", "Chloe", "David",
)  # fmt: skip
_SAYS = (  # a subset of the original dataset's speech templates; {c} is the claim
    "{name} says that {c}.",
    "{name} told you that {c}.",
    '{name} said, "{C}."',
    'According to {name}, "{C}".',
    '"{C}," {name} declared.',
    '{name} was heard saying, "{C}".',
)
_INTRO = (
    "A very special island is inhabited only by knights and knaves. "
    "Knights always tell the truth, and knaves always lie. "
)
_QUESTION = "So who is a knight and who is a knave?"
_ROLE = {True: "knight", False: "knave"}


def _render(style: str, names: tuple[str, ...], statements, knights, rng: random.Random) -> tuple[str, str]:
    """(prompt, solution) for one puzzle."""
    if style == "compact":
        prompt = ";".join(f"{names[i]}:{format_compact(s, names)}" for i, s in enumerate(statements)) + "?"
        solution = ",".join(f"{n} {_ROLE[k]}" for n, k in zip(names, knights))
        return prompt, solution
    listed = " and ".join(names) if len(names) == 2 else ", ".join(names[:-1]) + ", and " + names[-1]
    says = []
    for i, s in enumerate(statements):
        claim = format_natural(s, names)
        says.append(rng.choice(_SAYS).format(name=names[i], c=claim, C=claim[0].upper() + claim[1:]))
    prompt = f"{_INTRO}You meet {len(names)} inhabitants: {listed}. {' '.join(says)} {_QUESTION}"
    solution = "\n".join(f"({i + 1}) {n} is a {_ROLE[k]}" for i, (n, k) in enumerate(zip(names, knights)))
    return prompt, solution


# --- parsing ----------------------------------------------------------------------------


def parse_assignment(text: str, names: list[str] | tuple[str, ...]) -> dict[str, bool] | None:
    """Who the text says is a knight (True) or knave (False); None if anyone is missing.

    Accepts both answer styles and prose: "A knight", "Zoey is a knight", "Zoey is a
    Knave", anywhere in the text; the last mention of each name wins (so a model may
    reason first and conclude last). Names are case-sensitive, so with compact names
    ``a knight`` in prose is not person ``A``; "knight"/"knave" are not. "Zoey is not a
    knight" mentions no role for Zoey.
    """
    if not names:
        return {}
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)({alternatives})\s+(?:(?i:is)\s+(?i:an?)\s+)?((?i:knight|knave))(?!\w)")
    found: dict[str, bool] = {}
    for match in pattern.finditer(text):
        found[match.group(1)] = match.group(2).lower() == "knight"
    if any(n not in found for n in names):
        return None
    return {n: found[n] for n in names}


# --- the task ---------------------------------------------------------------------------

_COMPACT_NAMES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MAX_STALLED_DRAWS = 20_000  # draws in a row without a new puzzle before we call it exhausted


def _sample_leaf(rng: random.Random, speaker: int, n_people: int) -> Statement:
    while True:
        person, knight = rng.randrange(n_people), rng.random() < 0.5
        if knight or person != speaker:  # "I am a knave" is a paradox, never a puzzle
            return IsKnight(person) if knight else IsKnave(person)


def _sample_statement(rng: random.Random, speaker: int, n_people: int) -> Statement:
    """Depth 2, width 2, each kind with probability 1/6 as in the original generator."""
    kind = rng.randrange(6)
    if kind == 0:
        return _sample_leaf(rng, speaker, n_people)
    if kind == 1:
        return Not(_sample_leaf(rng, speaker, n_people))
    left = _sample_leaf(rng, speaker, n_people)
    right = _sample_leaf(rng, speaker, n_people)
    while right == left:
        right = _sample_leaf(rng, speaker, n_people)
    return (And, Or, Implies, Iff)[kind - 2](left, right)


class KnightsKnavesTask(Task):
    """Uniquely solvable K&K puzzles with ``min_people..max_people`` inhabitants.

    Puzzles are distinct (by statements, hence by prompt) within and across splits. The
    eval split is drawn first from the seeded stream, so ``n_train`` never changes it.
    The number of people is drawn uniformly per puzzle, but small counts run out of
    distinct puzzles (2 people allow only 399), so large requests lean towards
    the larger counts. ``meta``: ``names``, ``assignment`` (tuple of bool, True = knight),
    ``statements`` and ``n_people``.
    """

    name = "knights_knaves"

    def __init__(
        self,
        seed: int = 0,
        n_train: int = 2000,
        n_eval: int = 200,
        min_people: int = 2,
        max_people: int = 3,
        style: str = "compact",
    ) -> None:
        if style not in ("compact", "natural"):
            raise ValueError(f"knights_knaves: style={style!r}; valid: 'compact', 'natural'")
        if not 2 <= min_people <= max_people <= len(NAMES):
            raise ValueError(
                f"knights_knaves: min_people={min_people}, max_people={max_people}; "
                f"need 2 <= min_people <= max_people <= {len(NAMES)}"
            )
        if n_train < 0 or n_eval < 0:
            raise ValueError(f"knights_knaves: n_train={n_train} and n_eval={n_eval} must be >= 0")
        self.style = style
        rng = random.Random(seed)
        examples: list[Example] = []
        seen: set[tuple[Statement, ...]] = set()
        seen_prompts: set[str] = set()
        stalled = 0
        while len(examples) < n_eval + n_train:
            if stalled >= _MAX_STALLED_DRAWS:
                raise ValueError(
                    f"knights_knaves: found only {len(examples)} distinct uniquely solvable puzzles with "
                    f"{min_people}..{max_people} people after {stalled} fruitless draws, but "
                    f"n_train + n_eval = {n_train} + {n_eval} = {n_train + n_eval}; raise max_people"
                )
            stalled += 1
            n = rng.randint(min_people, max_people)
            statements = tuple(_sample_statement(rng, i, n) for i in range(n))
            if statements in seen:
                continue
            seen.add(statements)
            solutions = solve(n, statements)
            if len(solutions) != 1:
                continue
            names = tuple(_COMPACT_NAMES[:n]) if style == "compact" else tuple(rng.sample(NAMES, n))
            prompt, solution = _render(style, names, statements, solutions[0], rng)
            if prompt in seen_prompts:  # cannot happen with distinct statements; kept as the contract
                continue
            seen_prompts.add(prompt)
            stalled = 0
            meta = {"names": names, "assignment": solutions[0], "statements": statements, "n_people": n}
            examples.append(Example(prompt=prompt, answer=solution, solution=solution, meta=meta))
        self.eval = examples[:n_eval]
        self.train = examples[n_eval:]

    def is_correct(self, completion: str, example: Example) -> bool:
        names = example.meta["names"]
        return parse_assignment(completion, names) == dict(zip(names, example.meta["assignment"]))

    def is_well_formatted(self, completion: str, example: Example) -> bool:
        return parse_assignment(completion, example.meta["names"]) is not None
