"""JsonlTask: key detection, gold extraction, splitting, Parquet, errors and rewards."""

import json

import pytest

from trainer.tasks.jsonl import JsonlTask, gold_answer


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def gsm8k_rows(n=20):
    return [
        {"question": f"Q{i}: what is {i} + 70 - {i} + 2?", "answer": f"{i} + 70 = ...\n#### {72 + i}"} for i in range(n)
    ]


MATH_ROWS = [
    {"problem": "What is 3/4 as a fraction?", "solution": "It is $\\boxed{\\frac{3}{4}}$.", "level": "Level 1"},
    {"problem": "Pair?", "solution": "The pair is $\\boxed{(1, \\{2\\})}$.", "level": "Level 2"},
    {"problem": "Nested?", "solution": "So $\\boxed{\\frac{1}{\\sqrt{2}}}$", "level": "Level 3"},
]


def test_gsm8k_keys_and_gold(tmp_path):
    task = JsonlTask(write_jsonl(tmp_path / "gsm8k.jsonl", gsm8k_rows()), eval_fraction=0.25)
    examples = sorted(task.train + task.eval, key=lambda ex: ex.meta["line"])
    assert len(examples) == 20 and len(task.eval) == 5
    assert examples[0].prompt.startswith("Q0:") and examples[0].answer == "72"
    assert examples[0].solution.endswith("#### 72")  # SFT target = the worked answer text
    assert task.name == "jsonl"


def test_math_keys_and_boxed_gold(tmp_path):
    task = JsonlTask(write_jsonl(tmp_path / "math.jsonl", MATH_ROWS), eval_fraction=0.0)
    assert task.eval == []
    assert [ex.answer for ex in task.train] == ["\\frac{3}{4}", "(1, \\{2\\})", "\\frac{1}{\\sqrt{2}}"]
    assert task.train[0].solution == MATH_ROWS[0]["solution"]


def test_answer_and_solution_fields(tmp_path):
    rows = [{"problem": "p", "answer": "\\frac{3}{4}", "solution": "work... \\boxed{\\frac34}"}]
    task = JsonlTask(write_jsonl(tmp_path / "dsr.jsonl", rows), eval_fraction=0.0)
    ex = task.train[0]
    assert ex.answer == "\\frac{3}{4}"  # a bare gold stays whole (no last-number fallback)
    assert ex.solution == rows[0]["solution"]
    assert task.reward(ex.solution, ex) == 1.0


def test_gold_answer():
    assert gold_answer("blah\n#### 72") == "72"
    assert gold_answer("x \\boxed{\\frac{3}{4}} y") == "\\frac{3}{4}"
    assert gold_answer(" 42 ") == "42"
    assert gold_answer(7) == "7"


def test_split_deterministic_and_disjoint(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", gsm8k_rows(50))
    a, b = JsonlTask(path, seed=3), JsonlTask(path, seed=3)
    c = JsonlTask(path, seed=4)
    assert a.train == b.train and a.eval == b.eval
    assert a.eval != c.eval
    lines = lambda exs: {ex.meta["line"] for ex in exs}  # noqa: E731
    assert not lines(a.train) & lines(a.eval)
    assert len(lines(a.train) | lines(a.eval)) == 50 and len(a.eval) == 5


def test_explicit_eval_path_keys_and_template(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"q": "one", "a": "1", "s": "so 1", "tag": "T"}])
    evalp = write_jsonl(tmp_path / "test.jsonl", [{"q": "two", "a": "2", "s": "so 2", "tag": "E"}] * 3)
    task = JsonlTask(
        train, eval_path=evalp, prompt_key="q", answer_key="a", solution_key="s", prompt_template="[{tag}] {question}"
    )
    assert [ex.prompt for ex in task.train] == ["[T] one"]
    assert [ex.answer for ex in task.eval] == ["2", "2", "2"]
    assert task.train[0].solution == "so 1"


def test_chat_prompt_and_dotted_key(tmp_path):
    rows = [
        {
            "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is 6*7?"}],
            "reward_model": {"ground_truth": "42", "style": "rule"},
        }
    ]
    task = JsonlTask(
        write_jsonl(tmp_path / "dapo.jsonl", rows), answer_key="reward_model.ground_truth", eval_fraction=0.0
    )
    assert task.train[0].prompt == "What is 6*7?" and task.train[0].answer == "42"


def test_max_examples(tmp_path):
    task = JsonlTask(write_jsonl(tmp_path / "d.jsonl", gsm8k_rows(30)), max_examples=10, eval_fraction=0.2)
    assert len(task.train) + len(task.eval) == 10


def test_parquet_reader_path(tmp_path, monkeypatch):
    """Exercise the Parquet branch without an engine: read_parquet returns a known frame."""
    pd = pytest.importorskip("pandas")
    path = tmp_path / "d.parquet"
    path.write_bytes(b"stub")
    frame = pd.DataFrame(gsm8k_rows(4))
    monkeypatch.setattr(pd, "read_parquet", lambda p: frame if p == str(path) else None)
    task = JsonlTask(str(path), eval_fraction=0.0)
    assert [ex.answer for ex in task.train] == ["72", "73", "74", "75"]


def test_parquet_round_trip(tmp_path):
    pd = pytest.importorskip("pandas")
    if not any(_importable(m) for m in ("pyarrow", "fastparquet")):
        pytest.skip("no Parquet engine installed")
    path = tmp_path / "d.parquet"
    pd.DataFrame(gsm8k_rows(10)).to_parquet(path)
    task = JsonlTask(str(path), eval_fraction=0.0)
    assert [ex.answer for ex in task.train] == [str(72 + i) for i in range(10)]


def _importable(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        JsonlTask(str(tmp_path / "nope.jsonl"))


def test_bad_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        JsonlTask(str(path))


def test_missing_key_names_file_line_and_keys(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"question": "q", "answer": "1"}, {"question": "q2", "label": "2"}])
    with pytest.raises(
        ValueError, match=r"m\.jsonl:2: missing answer key .*'answer'.*keys present: \['label', 'question'\]"
    ):
        JsonlTask(path)
    with pytest.raises(ValueError, match=r"m\.jsonl:1: missing prompt key 'text'"):
        JsonlTask(path, prompt_key="text")


def test_other_errors(tmp_path):
    with pytest.raises(ValueError, match="no examples"):
        JsonlTask(write_jsonl(tmp_path / "empty.jsonl", []))
    with pytest.raises(ValueError, match="eval_fraction"):
        JsonlTask(write_jsonl(tmp_path / "x.jsonl", gsm8k_rows(3)), eval_fraction=1.0)
    with pytest.raises(ValueError, match=r"arr\.jsonl:1: expected a JSON object"):
        JsonlTask(write_jsonl(tmp_path / "arr.jsonl", [[1, 2]]))


def test_rewards(tmp_path):
    task = JsonlTask(write_jsonl(tmp_path / "math.jsonl", MATH_ROWS), eval_fraction=0.0)
    ex = task.train[0]
    assert task.reward("Simplify: $\\boxed{\\dfrac{3}{4}}$", ex) == 1.0
    assert task.reward("I think it is \\boxed{0.75}.", ex) == 1.0
    assert task.reward("\\boxed{4/3}", ex) == 0.0
    assert task.reward("garbage }{ \\boxed{", ex) == 0.0
    assert task.reward("", ex) == 0.0
    gsm = JsonlTask(write_jsonl(tmp_path / "g.jsonl", gsm8k_rows(2)), eval_fraction=0.0).train[0]
    assert task.reward("... so she pays $72.\n#### 72", gsm) == 1.0
    assert task.reward("The answer is 1,000", gsm) == 0.0
