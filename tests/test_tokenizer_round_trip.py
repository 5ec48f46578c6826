"""The text a run trains on is the text its task wrote: every built-in task's prompts, answers and
solutions encode and decode exactly through ``trainer.modeling.load_tokenizer`` — on the tiny
model's directory and on a warm start's, which saves the tokenizer again beside a Qwen2 config."""

import shutil

import pytest
from transformers import AutoTokenizer

from tests.test_task_jsonl import MATH_ROWS, gsm8k_rows, write_jsonl
from trainer.modeling import load_tokenizer
from trainer.tasks.arithmetic import ArithmeticTask
from trainer.tasks.jsonl import JsonlTask
from trainer.tasks.knights_knaves import KnightsKnavesTask


def _tasks(tmp_path):
    yield "arithmetic", ArithmeticTask(seed=0, n_train=200, n_eval=50, min_operand=0, max_operand=19,
                                       ops=("+", "-", "*"))
    for style in ("compact", "natural"):
        yield f"knights_knaves/{style}", KnightsKnavesTask(seed=0, n_train=200, n_eval=50, min_people=2,
                                                           max_people=5, style=style)
    yield "jsonl/gsm8k", JsonlTask(write_jsonl(tmp_path / "gsm8k.jsonl", gsm8k_rows()), eval_fraction=0.25)
    yield "jsonl/math", JsonlTask(write_jsonl(tmp_path / "math.jsonl", MATH_ROWS), eval_fraction=0.0)


def _texts(task):
    for ex in [*task.train, *task.eval]:
        yield from (ex.prompt, ex.answer, ex.solution)


def _warm_start_copy(model_dir, tmp_path):
    """What trainer/sft.py leaves: the tokenizer as loaded, saved again, beside the model's config."""
    out = tmp_path / "sft"
    load_tokenizer(model_dir).save_pretrained(out)
    shutil.copy(model_dir / "config.json", out / "config.json")
    return out


@pytest.mark.parametrize("where", ["tiny model", "warm start"])
def test_every_task_text_round_trips_character_by_character(model_dir, tmp_path, where):
    tok = load_tokenizer(model_dir if where == "tiny model" else _warm_start_copy(model_dir, tmp_path))
    for name, task in _tasks(tmp_path):
        for text in _texts(task):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.decode(ids) == text, (name, text)
            assert len(ids) == len(text), (name, text)  # one token per character: nothing merged or dropped
            assert tok.unk_token_id not in ids, (name, text)


def test_the_class_transformers_picks_would_drop_whitespace(model_dir):
    """Why load_tokenizer checks: AutoTokenizer alone reads the char tokenizer as the Qwen2 class of
    the model's config and loses every space and newline. If a transformers release stops doing so,
    this control fails and the check in load_tokenizer can go."""
    text = "A says: B is a knave.\nC"
    auto = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    assert auto.decode(auto(text, add_special_tokens=False)["input_ids"]) != text
    tok = load_tokenizer(model_dir)
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
