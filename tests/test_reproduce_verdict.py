"""Verdict rules of ``grpolab reproduce``: hand-worked cases, and properties a verdict must keep."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reproduce.claims import Claim, across_seeds, judge, ratio_across_seeds, verdict_of
from reproduce.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Kind, Measurement, Rule, decide


def m(lo, hi, n=5):
    return Measurement((lo + hi) / 2, lo, hi, n)


@pytest.mark.parametrize("rule, lo, hi, want", [
    (Rule(Kind.greater, 0.0, 0.02, 5), 0.01, 0.05, REPRODUCED),          # interval above 0
    (Rule(Kind.greater, 0.0, 0.02, 5), -0.03, 0.015, NOT_REPRODUCED),    # rules out ≥ 0.02
    (Rule(Kind.greater, 0.0, 0.02, 5), -0.03, 0.05, INCONCLUSIVE),       # spans 0 and 0.02
    (Rule(Kind.greater, 0.0, 0.0, 5), -0.03, -0.001, NOT_REPRODUCED),    # no margin: only the opposite sign
    (Rule(Kind.greater, 2.0, 0.0, 3), 2.5, 40.0, REPRODUCED),            # a ratio threshold
    (Rule(Kind.greater, 2.0, 0.0, 3), 1.1, 1.9, NOT_REPRODUCED),
    (Rule(Kind.less, 0.5, 0.05, 3), 0.2, 0.45, REPRODUCED),
    (Rule(Kind.less, 0.5, 0.05, 3), 0.46, 0.7, NOT_REPRODUCED),          # lo > 0.45
    (Rule(Kind.less, 0.5, 0.05, 3), 0.44, 0.7, INCONCLUSIVE),
    (Rule(Kind.within, 0.0, 0.1, 3), -0.05, 0.08, REPRODUCED),
    (Rule(Kind.within, 0.0, 0.1, 3), 0.12, 0.3, NOT_REPRODUCED),
    (Rule(Kind.within, 0.0, 0.1, 3), 0.05, 0.3, INCONCLUSIVE),
])
def test_hand_worked_verdicts(rule, lo, hi, want):
    assert decide(rule, m(lo, hi))[0] == want


def test_too_few_units_or_no_interval_is_inconclusive():
    rule = Rule(Kind.greater, 0.0, 0.02, 5)
    assert decide(rule, m(0.1, 0.2, n=4)) == (INCONCLUSIVE, "n = 4 < 5")
    assert decide(rule, Measurement(0.1, math.nan, math.nan, 9))[0] == INCONCLUSIVE


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="margin"):
        Rule(Kind.greater, 0.0, -1.0)
    with pytest.raises(ValueError, match="within"):
        Rule(Kind.within, 0.0, 0.0)


finite = st.floats(-10, 10, allow_nan=False)


@given(finite, st.floats(0, 5), finite, st.floats(0, 5), st.floats(0, 5))
def test_a_higher_interval_never_lowers_a_greater_verdict(t, margin, lo, width, shift):
    """Moving the interval up can only move a ``greater`` claim towards reproduced (and ``less``
    the other way): the verdict is monotone in the evidence."""
    order = {NOT_REPRODUCED: 0, INCONCLUSIVE: 1, REPRODUCED: 2}
    g, le = Rule(Kind.greater, t, margin, 1), Rule(Kind.less, t, margin, 1)
    a, b = m(lo, lo + width), m(lo + shift, lo + width + shift)
    assert order[decide(g, b)[0]] >= order[decide(g, a)[0]]
    assert order[decide(le, b)[0]] <= order[decide(le, a)[0]]


@given(finite, st.floats(0.01, 5), finite, st.floats(0, 5))
def test_reproduced_and_not_reproduced_never_both_hold(t, margin, lo, width):
    """A ``within`` verdict of reproduced needs the whole interval inside, not reproduced needs it wholly
    outside: the two are disjoint, and a narrower interval inside stays reproduced."""
    rule = Rule(Kind.within, t, margin, 1)
    v = decide(rule, m(lo, lo + width))[0]
    inside = t - margin <= lo and lo + width <= t + margin
    outside = lo + width < t - margin or lo > t + margin
    assert (v == REPRODUCED) == inside and (v == NOT_REPRODUCED) == outside


def test_verdict_of_reads_a_claims_row_back():
    claim = Claim("x.y", "x", "Fig. 1", "q", "m", Rule(Kind.greater, 0.0, 0.02, 2))
    row = judge(claim, across_seeds([0.1, 0.12, 0.11])).as_dict()
    assert row["verdict"] == REPRODUCED == verdict_of(row)
    row["lo"] = -1.0  # the numbers, not the stored verdict, decide
    assert verdict_of(row) == INCONCLUSIVE


def test_across_seeds_is_the_t_interval():
    from scipy import stats

    x = [0.3, 0.1, 0.4, 0.25]
    got = across_seeds(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=sum(x) / 4, scale=stats.sem(x))
    assert got.n == 4 and got.lo == pytest.approx(lo) and got.hi == pytest.approx(hi)
    r = ratio_across_seeds([2.0, 8.0])  # geometric mean 4
    assert r.effect == pytest.approx(4.0) and r.lo < 4.0 < r.hi


def test_a_report_says_which_overrides_replaced_the_preset_and_what_model_it_trained():
    from reproduce.paper import Plan
    from reproduce.report import changes_text
    from reproduce.run import model_text

    text = changes_text(["model=small", "paths.output_root=/x", "+launcher.env.HF_TOKEN=hf_abc", "train.steps=120",
                         "+tracker.wandb.api_key=secret123"])
    assert text.startswith("On top of the preset, this run set `model=small train.steps=120`:")
    assert "secret123" not in text and "hf_abc" not in text
    assert changes_text(["paths.output_root=/x", "launcher=slurm"]) == ""
    plan = Plan(sweeps=(("a", ("variant=grpo,nthr", "seed=0,1")),))
    assert model_text(plan, []) == "a 0.6M-parameter model"  # conf/model/tiny.yaml's stated size
    assert model_text(plan, ["model=small"]) == "a 2.4M-parameter model"
    assert model_text(plan, ["model=local_checkpoint", "model.path=/data/ckpt"]) == "the checkpoint /data/ckpt"
