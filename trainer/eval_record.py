"""``evals.jsonl``: the per-prompt eval outcomes of a run, one row per eval step (step 0 = warm start).

Part of the run record (``trainer.run_record`` re-exports both names and reads and writes the file);
a module of its own so the schema of the record's newest file reads in one place. Stdlib only.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Optional

from trainer.record_check import field_problems


def prompt_id(index: int, prompt: str) -> str:
    """A held-out prompt's id in ``evals.jsonl``: its index in the run's eval list and the first 8 hex
    digits of the SHA-256 of its text (``"3:1f2e4d5c"``). Two runs' rows pair by prompt when the ids
    are equal; the hash catches an eval list that changed under the same index."""
    return f"{index}:{hashlib.sha256(prompt.encode('utf-8')).hexdigest()[:8]}"


@dataclass
class EvalRow:
    """One line of ``evals.jsonl``: every held-out prompt's outcome at one eval step, columnar (the
    lists are aligned, in eval-list order). ``correct[i]`` of ``eval_n`` samples of prompt
    ``prompt_ids[i]`` were correct; ``length[i]`` is their mean completion length in tokens."""

    step: int
    eval_n: int
    prompt_ids: list
    correct: list
    length: list

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Optional["EvalRow"]:
        """None for a row that is not one (a field missing or of the wrong type, lists of unequal length)."""
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, dict) or not set(names) <= set(data) or field_problems(cls, data):
            return None
        row = cls(**{k: data[k] for k in names})
        return row if len({len(row.prompt_ids), len(row.correct), len(row.length)}) == 1 else None
