"""Which verifier scores a math completion: grpolab's exact path, math-verify, or both.

``exact`` is ``trainer.tasks.math_verify`` (stdlib, ~25 µs a call). ``math_verify`` is Hugging Face's
math-verify 0.9.0 (the verifier of TRL's ``accuracy_reward``, open-r1 and verl's math rewards: ~3–6 ms
a call, sympy equivalence), run in a ``VerifyPool`` with a hard per-call deadline. ``exact+math_verify``
lets the exact path decide what it decides exactly — one distinct boxed answer and a gold that are
both plain numbers, or several distinct boxes (a hedge, never correct) — and sends everything else to
math-verify. The three names are ``task.verifier``'s values (docs/rewards.md).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from trainer.tasks.math_verify import extract_answer, final_boxed, hedged, math_equal, plain_number
from trainer.tasks.verify_pool import Verdict, shared_pool

EXACT, MATH_VERIFY, COMBINED = "exact", "math_verify", "exact+math_verify"
NAMES = (EXACT, MATH_VERIFY, COMBINED)
INSTALL = 'pip install -c constraints/cpu.txt -e ".[math]"'


def math_verify_installed() -> bool:
    return importlib.util.find_spec("math_verify") is not None


def resolve(name: str | None) -> str:
    """``task.verifier``'s value, null meaning exact+math_verify where math-verify is installed, else exact."""
    if name is None:
        return COMBINED if math_verify_installed() else EXACT
    return name


def single_answer(gold: str) -> bool:
    """Whether the gold is one answer (no list, no "and", no several boxes): then several boxes are a hedge."""
    return "," not in gold and " and " not in gold and gold.count("\\boxed") <= 1


def exact_decision(completion: str, gold: str) -> bool | None:
    """The combined verifier's fast path: a verdict when it is certain, None to ask math-verify.

    A hedge (several distinct boxed answers to a single-answer gold) is wrong; a final boxed answer
    (no "answer is" after it) and a gold that are both plain numbers (integer or decimal, after
    ``normalize``) are compared exactly.
    """
    if single_answer(gold) and hedged(completion):
        return False
    boxed = final_boxed(completion)
    if boxed is None:
        return None
    pred, ref = plain_number(boxed), plain_number(gold)
    if pred is None or ref is None:
        return None
    return pred == ref


@dataclass
class Judged:
    """A batch's verdicts and what scoring it took."""

    correct: list[bool]
    timeouts: int = 0
    errors: int = 0
    sent: int = 0
    """How many completions went to math-verify."""
    details: list[str] = field(default_factory=list)


class Verifier:
    """Scores (completion, gold) pairs under one of ``NAMES``; math-verify calls go to a shared pool."""

    def __init__(self, name: str, workers: int = 2, timeout_s: float = 5.0):
        if name not in NAMES:
            raise ValueError(f"task.verifier={name!r}: one of {', '.join(NAMES)}")
        if name != EXACT and not math_verify_installed():
            raise ValueError(f"task.verifier={name}: math-verify is not installed ({INSTALL})")
        self.name, self.workers, self.timeout_s = name, workers, timeout_s

    def _pool(self):
        return shared_pool(self.workers, self.timeout_s)

    def check_golds(self, golds: list[tuple[str, str]]) -> None:
        """Parse every gold once (``(where, gold)`` pairs); ValueError naming the first that parses to nothing."""
        if self.name == EXACT:
            return
        todo = [(where, g) for where, g in golds if self.name == MATH_VERIFY or plain_number(g) is None]
        verdicts = self._pool().run([("gold", g, "") for _, g in todo])
        for (where, g), v in zip(todo, verdicts):
            if v.status != "ok" or not v.value:
                why = "parses to nothing" if v.status == "ok" else f"could not be parsed ({v.status} {v.detail})"
                raise ValueError(f"{where}: gold answer {g[:80]!r} {why} under math-verify "
                                 f"(task.verifier={self.name}; task.verifier=exact compares it as text)")

    def judge(self, completions: list[str], golds: list[str]) -> Judged:
        if self.name == EXACT:
            return Judged([not (single_answer(g) and hedged(c)) and math_equal(extract_answer(c), g)
                           for c, g in zip(completions, golds)])
        decided = [exact_decision(c, g) if self.name == COMBINED else None for c, g in zip(completions, golds)]
        ask = [i for i, d in enumerate(decided) if d is None]
        verdicts: list[Verdict] = self._pool().run([("verify", golds[i], completions[i]) for i in ask]) if ask else []
        out = Judged([bool(d) for d in decided], sent=len(ask))
        for i, v in zip(ask, verdicts):
            out.correct[i] = v.status == "ok" and bool(v.value)
            out.timeouts += v.status == "timeout"
            out.errors += v.status == "error"
            if v.status != "ok":
                out.details.append(f"{v.status}: {v.detail}")
        return out
