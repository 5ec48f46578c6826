"""Integer arithmetic prompts ``"12+7="`` with an exactly checkable answer.

The smallest task with a verifiable reward: a tiny char-level policy reads the compact
prompt and must emit the result, e.g. ``"19"``. It is the smoke test of the RL loop
(rewards move within minutes on CPU) before the harder Knights-and-Knaves puzzles.

Verifier rules (``is_correct``), chosen so that the reward is exact and cannot crash:

* strip the completion, keep the text before the first newline, strip again;
* it must be ASCII digits with an optional leading ``-`` (``-?[0-9]+``). ``"+42"``,
  ``"4 2"``, ``"42.0"`` and non-ASCII digits such as ``"٤٢"`` (which ``int()`` would
  accept) are wrong: the solver never writes them, so they cannot be what we teach;
* the value is compared as an integer, so ``"042"`` and ``"-0"`` are right for 42 and 0.
  The comparison is done on canonical digit strings, never with ``int()``: Python 3.11
  refuses ``int()`` on strings over 4300 digits and a policy can emit such a string.
"""

from __future__ import annotations

import random
import re

from trainer.tasks.base import Example, Task

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_INT = re.compile(r"-?[0-9]+")


def canonical_int(text: str) -> str | None:
    """``"-007"`` -> ``"-7"``, ``"-0"`` -> ``"0"``; None unless ``text`` is ``-?[0-9]+``.

    Linear in the length and free of ``int()``'s 4300-digit limit.
    """
    if not _INT.fullmatch(text):
        return None
    digits = text.lstrip("-").lstrip("0")
    if not digits:
        return "0"
    return "-" + digits if text.startswith("-") else digits


def _distinct_indices(rng: random.Random, population: int, k: int) -> list[int]:
    """First ``k`` entries of a seeded random permutation of ``range(population)``.

    A lazy Fisher-Yates shuffle: O(k) time and memory, and entry ``i`` depends only on
    the first ``i`` draws, so a longer request extends a shorter one instead of
    reshuffling it (this is what keeps the eval split fixed when ``n_train`` changes).
    """
    swapped: dict[int, int] = {}
    out = []
    for i in range(k):
        j = rng.randrange(i, population)
        out.append(swapped.get(j, j))
        swapped[j] = swapped.get(i, i)
    return out


class ArithmeticTask(Task):
    """``a op b`` over ``min_operand..max_operand`` (inclusive) with ``op`` in ``ops``.

    Prompts are distinct within and across splits. The eval split is drawn first from
    the seeded stream, so it depends on ``seed``, the operand range, ``ops`` and
    ``n_eval`` only; ``n_train`` never changes it.
    """

    name = "arithmetic"

    def __init__(
        self,
        seed: int = 0,
        n_train: int = 2000,
        n_eval: int = 200,
        min_operand: int = 0,
        max_operand: int = 99,
        ops: tuple[str, ...] = ("+", "-"),
    ) -> None:
        ops = tuple(dict.fromkeys(ops))  # dedupe, keep order: the order fixes the index map
        bad = [op for op in ops if op not in _OPS]
        if not ops or bad:
            raise ValueError(f"arithmetic: ops={ops!r} invalid; use a non-empty subset of {tuple(_OPS)}")
        if min_operand > max_operand:
            raise ValueError(f"arithmetic: min_operand={min_operand} > max_operand={max_operand}")
        if n_train < 0 or n_eval < 0:
            raise ValueError(f"arithmetic: n_train={n_train} and n_eval={n_eval} must be >= 0")
        width = max_operand - min_operand + 1
        capacity = width * width * len(ops)
        if n_train + n_eval > capacity:
            raise ValueError(
                f"arithmetic: operands {min_operand}..{max_operand} with ops {ops} give only "
                f"{capacity} distinct prompts, but n_train + n_eval = {n_train} + {n_eval} = "
                f"{n_train + n_eval}"
            )

        rng = random.Random(seed)
        examples = []
        for index in _distinct_indices(rng, capacity, n_eval + n_train):
            # index -> (op, a, b) is a bijection, so distinct indices give distinct prompts.
            op_i, rest = divmod(index, width * width)
            a_i, b_i = divmod(rest, width)
            a, b, op = min_operand + a_i, min_operand + b_i, ops[op_i]
            result = str(_OPS[op](a, b))
            examples.append(
                Example(prompt=f"{a}{op}{b}=", answer=result, solution=result, meta={"a": a, "b": b, "op": op})
            )
        self.eval = examples[:n_eval]
        self.train = examples[n_eval:]

    def is_correct(self, completion: str, example: Example) -> bool:
        got = canonical_int(_first_line(completion))
        return got is not None and got == canonical_int(example.answer.strip())

    def is_well_formatted(self, completion: str, example: Example) -> bool:
        return canonical_int(_first_line(completion)) is not None


def _first_line(completion: str) -> str:
    return completion.strip().split("\n", 1)[0].strip()
