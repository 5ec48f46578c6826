"""A task read from a local JSONL (or Parquet) file of math problems with final answers.

One loader covers the common layouts so a sweep only names a file: GSM8K
(``question`` / ``answer`` ending in ``#### 72``), MATH (``problem`` / ``solution`` with a
``\\boxed{}``), DeepScaleR (``problem`` / ``answer`` / ``solution``) and chat-style
``prompt`` lists (DAPO-17K; its gold sits at ``reward_model.ground_truth``, reachable with
``answer_key="reward_model.ground_truth"``: a dotted key walks nested objects).
Nothing is downloaded: clusters keep local copies. Data errors raise ``ValueError``
naming the file, the line (row for Parquet) and the key, because a bad row discovered
hours into a sweep is far costlier than one reported at construction.
"""

from __future__ import annotations

import json
import logging
import os
import random
from typing import Any, Iterator

from trainer.tasks.base import Example, Rewards, Task
from trainer.tasks.math_verify import extract_answer, hedged, last_boxed
from trainer.tasks.verifier import EXACT, Verifier

log = logging.getLogger(__name__)

PROMPT_KEYS = ("prompt", "question", "problem", "query")
ANSWER_KEYS = ("answer", "final_answer", "solution", "gold")


def gold_answer(text: Any) -> str:
    """The canonical gold answer inside a dataset's answer field.

    The last ``\\boxed{}`` (MATH solutions; the whole text when it boxes several distinct answers,
    so a multi-part gold keeps every part), else what follows the last ``####`` (GSM8K), else the
    whole stripped text. Unlike ``extract_answer`` there is no last-number fallback: a bare gold
    such as ``\\frac{3}{4}`` must stay whole, not become ``4``.
    """
    text = str(text)
    boxed = last_boxed(text)
    if boxed is not None:
        return text.strip() if hedged(text) else boxed
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().split("\n", 1)[0].strip()
    return text.strip()


def _lookup(record: dict, key: str) -> Any:
    """``record[key]``, or a walk through nested dicts for a dotted key; None if absent."""
    if key in record:
        return record[key]
    value: Any = record
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _prompt_text(prompt: Any) -> str | None:
    """A string prompt as is; for a chat list the content of the last ``user`` message.

    Earlier turns (system prompt, few-shot) are dropped on purpose: the rollout applies
    its own chat template, and the task's prompt is the question itself.
    """
    if isinstance(prompt, str):
        return prompt
    if hasattr(prompt, "tolist"):  # numpy arrays from Parquet list columns
        prompt = prompt.tolist()
    if isinstance(prompt, (list, tuple)):
        for message in reversed(prompt):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):  # multi-part content: keep the text parts
                    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return content if isinstance(content, str) else None
    return None


def _read_records(path: str) -> Iterator[tuple[int, dict]]:
    """Yield (line or row number from 1, record) pairs."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such data file")
    if path.endswith(".parquet"):
        try:
            import pandas as pd  # lazy: only Parquet users need pandas
        except ImportError as e:
            raise ImportError(f"{path}: reading Parquet needs pandas ({e})") from e
        for i, record in enumerate(pd.read_parquet(path).to_dict("records"), start=1):
            yield i, record
        return
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


class JsonlTask(Task):
    """Math problems from a local JSONL/Parquet file, scored by final-answer equality.

    Keys left as None are detected per record: the prompt from the first present of
    ``PROMPT_KEYS``, the answer from ``ANSWER_KEYS``. ``Example.solution`` (the SFT
    target) is ``solution_key``'s text if given, else the record's ``solution`` field if
    present, else the raw answer text (a GSM8K answer is a full worked solution).
    Without ``eval_path`` the file is split by ``seed``: ``eval_fraction`` of the records
    (at least one, at most all but one) go to eval, the rest to train, disjoint, each in
    file order. ``max_examples`` caps the records read from each file (first N), for
    smoke runs. ``prompt_template`` is formatted with ``question`` and the record's fields.
    """

    name = "jsonl"

    def __init__(
        self,
        path: str,
        eval_path: str | None = None,
        prompt_key: str | None = None,
        answer_key: str | None = None,
        solution_key: str | None = None,
        eval_fraction: float = 0.1,
        seed: int = 0,
        max_examples: int | None = None,
        prompt_template: str = "{question}",
        verifier: str = EXACT,
        verifier_workers: int = 2,
        verifier_timeout_s: float = 5.0,
    ) -> None:
        if not 0.0 <= eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
        self.path, self.eval_path = str(path), None if eval_path is None else str(eval_path)
        self.prompt_key, self.answer_key, self.solution_key = prompt_key, answer_key, solution_key
        self.prompt_template, self.max_examples = prompt_template, max_examples
        self.verifier = Verifier(verifier, verifier_workers, verifier_timeout_s)
        examples = self._load(self.path)
        if self.eval_path is not None:
            self.train, self.eval = examples, self._load(self.eval_path)
            return
        n = len(examples)
        n_eval = min(max(round(n * eval_fraction), 1 if eval_fraction > 0 else 0), n - 1)
        order = list(range(n))
        random.Random(seed).shuffle(order)
        eval_ids = set(order[:n_eval])
        self.train = [ex for i, ex in enumerate(examples) if i not in eval_ids]
        self.eval = [ex for i, ex in enumerate(examples) if i in eval_ids]

    def _field(
        self, record: dict, key: str | None, candidates: tuple[str, ...], what: str, where: str
    ) -> tuple[str, Any]:
        """(key, value) for an explicit key or the first present candidate; ValueError otherwise."""
        for k in (key,) if key is not None else candidates:
            value = _lookup(record, k)
            nan = isinstance(value, float) and value != value  # a missing Parquet cell
            if not (value is None or nan or (isinstance(value, str) and not value.strip())):
                return k, value
        wanted = repr(key) if key is not None else "one of " + ", ".join(map(repr, candidates))
        raise ValueError(f"{where}: missing {what} key {wanted}; keys present: {sorted(record)}")

    def _load(self, path: str) -> list[Example]:
        examples = []
        for lineno, record in _read_records(path):
            if self.max_examples is not None and len(examples) >= self.max_examples:
                break
            where = f"{path}:{lineno}"
            _, raw_prompt = self._field(record, self.prompt_key, PROMPT_KEYS, "prompt", where)
            question = _prompt_text(raw_prompt)
            if question is None:
                raise ValueError(f"{where}: prompt is neither a string nor a chat list with a user message")
            _, raw_answer = self._field(record, self.answer_key, ANSWER_KEYS, "answer", where)
            if self.solution_key is not None:
                _, solution = self._field(record, self.solution_key, (), "solution", where)
            else:
                solution = record.get("solution") or raw_answer
            try:
                prompt = self.prompt_template.format_map({**record, "question": question})
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"{where}: prompt_template {self.prompt_template!r} failed: {e!r}") from None
            answer = gold_answer(raw_answer)
            if not answer:
                raise ValueError(f"{where}: empty gold answer extracted from {str(raw_answer)[:80]!r}")
            examples.append(Example(prompt, answer, str(solution), {"file": path, "line": lineno}))
        if not examples:
            raise ValueError(f"{path}: no examples")
        self.verifier.check_golds([(f"{e.meta['file']}:{e.meta['line']}", e.answer) for e in examples])
        return examples

    def is_correct(self, completion: str, example: Example) -> bool:
        """The completion's final answer equals the gold, under ``task.verifier`` (docs/rewards.md)."""
        return self.verifier.judge([completion], [example.answer]).correct[0]

    def rewards(self, completions: list[str], examples: list[Example]) -> Rewards:
        """One verifier batch: math-verify's calls spread over the pool's workers, each under the deadline.

        A timeout or a verifier error scores 0 and is counted (``reward_timeouts``, ``reward_errors``)
        and logged, never silently.
        """
        judged = self.verifier.judge(completions, [e.answer for e in examples])
        values = [
            1.0 if ok else (self.format_reward if self.format_reward and self.is_well_formatted(c, e) else 0.0)
            for ok, c, e in zip(judged.correct, completions, examples)
        ]
        if judged.details:
            log.warning("reward: %d timeouts, %d verifier errors in %d completions (first: %s)",
                        judged.timeouts, judged.errors, len(completions), judged.details[0])
        n = max(len(completions), 1)
        return Rewards(values, {"reward_timeouts": float(judged.timeouts), "reward_errors": float(judged.errors),
                                "reward_math_verify_frac": judged.sent / n})

    def is_well_formatted(self, completion: str, example: Example) -> bool:
        return extract_answer(completion) is not None
