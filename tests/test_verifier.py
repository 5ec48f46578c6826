"""task.verifier: the exact path's fixed gaps, math-verify behind it in a deadline-bound pool, golds at load.

Expected values are independent of the code: hand-written verdicts (tests/data/reward_corpus.json,
written before the verifier was tuned), math-verify's own test tables (tests/data/math_verify_cases.json)
and invariants (the combined verifier equals the exact path on plain-number single-box answers).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.tasks import verifier as vf
from trainer.tasks.math_verify import extract_answer, math_equal

DATA = Path(__file__).parent / "data"
needs_mv = pytest.mark.skipif(not vf.math_verify_installed(), reason="math-verify not installed (the math extra)")


def exact(completion: str, gold: str) -> bool:
    return vf.Verifier(vf.EXACT).judge([completion], [gold]).correct[0]


# ---------------------------------------------------------------- the exact path's gaps, fixed
@pytest.mark.parametrize("completion,gold,expected", [
    (r"Summing gives $\boxed{14{,}916}$.", "14916", True),          # MATH's {,} thousands separator
    (r"So she earned \boxed{\$18}.", "18", True),                    # escaped dollar
    (r"Hence the value is \( \dfrac{7}{2} \).", "3.5", True),         # \( \) delimiters
    ("Counting them all, the answer is 42 apples.", "42", True),     # a unit word after "answer is"
    (r"The area is $\boxed{12 \textnormal{ square units}}$.", "12", True),
    (r"It could be $\boxed{5}$ or maybe $\boxed{7}$.", "7", False),  # hedging: several distinct boxes
    (r"First $\boxed{7}$; checked again: $\boxed{7}$.", "7", True),   # one answer boxed twice is no hedge
    (r"The probability is $\dfrac{1}{3}$.", "3", False),             # no last-number fallback inside $…$
    (r"The probability is $\dfrac{1}{3}$.", r"\frac{1}{3}", True),
    ("I bought 3 apples and then 5 more", "5", True),                # outside maths the last number stays
])
def test_exact_path(completion, gold, expected):
    assert exact(completion, gold) is expected


def test_math_span_fallback_takes_the_whole_span():
    assert extract_answer(r"so it is $\frac{1}{3}$") == r"\frac{1}{3}"
    assert extract_answer(r"so it is $$x = 4$$ and done") == "x = 4"


@settings(max_examples=200, deadline=None)
@given(st.integers(-10**9, 10**9), st.integers(-10**9, 10**9), st.integers(0, 3))
def test_combined_equals_exact_on_plain_numbers(a, b, decimals):
    """Invariant: a single boxed plain number against a plain-number gold never reaches math-verify."""
    pred, gold = f"{a / 10**decimals:.{decimals}f}", f"{b / 10**decimals:.{decimals}f}"
    completion = f"The result is $\\boxed{{{pred}}}$."
    assert vf.exact_decision(completion, gold) is exact(completion, gold)
    assert vf.exact_decision(completion, pred) is True


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789$\\{}()[],.-+ ^_boxedfracanswerist%")), max_size=80),
       st.sampled_from(["5", "-2.5", r"\frac{1}{3}", "(1, 2)", r"\text{Monday}"]))
def test_the_fast_path_is_total(completion, gold):
    """Any string gets a verdict or a deferral from the fast path, never an exception."""
    assert vf.exact_decision(completion, gold) in (True, False, None)
    assert exact(completion, gold) in (True, False)


# ---------------------------------------------------------------- against independent verdicts
def _agreement(name: str, cases: list[tuple[str, str, bool]]) -> int:
    judged = vf.Verifier(name, workers=2, timeout_s=10).judge([c for _, c, _ in cases], [g for g, _, _ in cases])
    return sum(ok == expected for ok, (_, _, expected) in zip(judged.correct, cases))


@needs_mv
def test_corpus_combined_beats_exact_and_matches_math_verify():
    cases = [(c["gold"], c["completion"], c["expected"]) for c in json.loads((DATA / "reward_corpus.json").read_text())
             ["cases"]]
    assert len(cases) >= 40
    combined, mv, ex = (_agreement(n, cases) for n in (vf.COMBINED, vf.MATH_VERIFY, vf.EXACT))
    assert combined >= mv and combined > ex, (combined, mv, ex)
    assert combined >= 0.9 * len(cases)


@needs_mv
@pytest.mark.slow  # ~17 s: math-verify's default on 264 cases in this process, the combined one in the pool
def test_math_verify_own_cases_combined_at_least_its_default():
    """The combined verifier, golds read as JsonlTask reads them, agrees with math-verify's expected values
    at least as often as math-verify's default does."""
    from math_verify import parse, verify

    from trainer.tasks.jsonl import gold_answer

    raw = json.loads((DATA / "math_verify_cases.json").read_text())["cases"]
    assert len(raw) >= 250
    cases = [(gold_answer(c["gold"]), c["pred"], bool(c["expected"])) for c in raw]
    default = sum(bool(verify(parse(c["gold"]), parse(c["pred"]))) == bool(c["expected"]) for c in raw)
    assert _agreement(vf.COMBINED, cases) >= default


@needs_mv
def test_boxed_percent_parses_under_antlr_4_9_3():
    from importlib.metadata import version

    from math_verify import parse, verify

    assert version("antlr4-python3-runtime") == "4.9.3"  # what hydra-core/omegaconf pin
    assert parse(r"\boxed{25\%}")
    assert verify(parse(r"\boxed{25\%}"), parse(r"So the share is \boxed{25\%}."))


# ---------------------------------------------------------------- the deadline, from any thread
ADVERSARIAL = [
    r"$\boxed{9^{9^{9^9}}}$", r"$\boxed{2^{2^{40}}}$", r"$\boxed{3^{10^9}}$", "1" * 1_000_000,
    r"\boxed{\frac{1}{" * 2000, "{" * 5000 + "1" + "}" * 5000,
]


def _judge_adversarial(out: dict) -> None:
    t0 = time.monotonic()
    v = vf.Verifier(vf.MATH_VERIFY, workers=2, timeout_s=1.0)
    out["judged"] = v.judge(ADVERSARIAL, ["2"] * len(ADVERSARIAL))
    out["seconds"] = time.monotonic() - t0


@needs_mv
@pytest.mark.parametrize("where", ["main", "thread"])
def test_adversarial_inputs_end_within_the_deadline(where):
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    signal.alarm(600)  # the caller's own alarm must survive the verifier
    try:
        out: dict = {}
        if where == "main":
            _judge_adversarial(out)
        else:
            t = threading.Thread(target=_judge_adversarial, args=(out,))
            t.start()
            t.join(60)
        judged = out["judged"]
        assert judged.correct == [False] * len(ADVERSARIAL)
        assert judged.timeouts + judged.errors + judged.correct.count(False) >= len(ADVERSARIAL)
        assert judged.timeouts >= 2  # the towers cannot be evaluated within a second
        # each call ends by its deadline: at most ceil(6 / 2 workers) rounds of 1 s, plus respawns
        assert out["seconds"] < 3 * 1.0 + 10
        assert signal.alarm(0) > 0 and not fired
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@needs_mv
def test_timeouts_are_counted_in_the_batch_stats(tmp_path):
    from trainer.tasks.jsonl import JsonlTask

    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"question": f"q{i}", "answer": "2"}) for i in range(3)) + "\n")
    task = JsonlTask(str(path), eval_fraction=0.34, verifier=vf.COMBINED, verifier_workers=1, verifier_timeout_s=1.0)
    ex = task.train[0]
    out = task.rewards([r"\boxed{2}", r"$\boxed{9^{9^{9^9}}}$", r"\boxed{\frac{4}{2}}"], [ex, ex, ex])
    assert out.values == [1.0, 0.0, 1.0]
    assert out.stats["reward_timeouts"] == 1.0 and out.stats["reward_errors"] == 0.0


# ---------------------------------------------------------------- golds at load, and the install check
@needs_mv
def test_a_gold_that_parses_to_nothing_fails_at_load(tmp_path):
    from trainer.tasks.jsonl import JsonlTask

    path = tmp_path / "d.jsonl"
    rows = [{"question": "q1", "answer": "#### 5"}, {"question": "q2", "answer": r"#### \text{}"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(ValueError) as e:
        JsonlTask(str(path), verifier=vf.COMBINED)
    msg = str(e.value)
    assert f"{path}:2" in msg and "parses to nothing" in msg and "\n" not in msg
    JsonlTask(str(path), verifier=vf.EXACT)  # the exact path compares it as text


def test_without_math_verify_asking_for_it_is_one_config_error(monkeypatch):
    from sweeps.compose import compose
    from trainer.knobs import ConfigError
    from trainer.validation import config_warnings

    monkeypatch.setattr(vf, "math_verify_installed", lambda: False)
    with pytest.raises(ConfigError) as e:
        compose(["task=jsonl", "task.jsonl.path=/x.jsonl", "task.verifier=exact+math_verify"])
    line = [m for m in str(e.value).splitlines() if "task.verifier" in m]
    assert line and "exact+math_verify" in line[0] and 'pip install' in line[0] and ".[math]" in line[0]
    default = compose(["task=jsonl", "task.jsonl.path=/x.jsonl"])
    assert any("falls back to exact" in w for w in config_warnings(default))
    assert vf.resolve(None) == vf.EXACT


def test_the_default_resolves_to_combined_where_installed():
    assert vf.resolve(None) == (vf.COMBINED if vf.math_verify_installed() else vf.EXACT)
    assert math_equal("1{,}000", "1000")
