"""A paper's claim, the measurement grpolab makes of it, and the verdict the claim's rule gives.

``Claim`` is what the paper says (quoted, with its figure or table and its own number where it
gives one) and how grpolab reads it (``measure``: what is measured, ``rule``: when it counts as
reproduced). ``Result`` is one claim measured: the effect with its interval, the verdict, and the
details a reader needs to check it (per-seed values, the probe's step, …). ``claims.json`` holds
the results, so ``verdict_of`` can re-derive every verdict from the numbers alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analysis.stats import mean_ci
from reproduce.verdict import INCONCLUSIVE, Measurement, Rule, decide


@dataclass(frozen=True)
class Claim:
    id: str  # lopti.grad_norm_ratio
    paper: str  # lopti
    where: str  # "Fig. 1d"
    quote: str  # what the paper says
    measure: str  # what grpolab measures, in words
    rule: Rule
    unit: str = ""
    paper_value: str = ""  # the paper's own number, "" where it gives none
    kind: str = "probe"  # probe (single-update statistics) or accuracy (trained runs)


@dataclass
class Result:
    claim: Claim
    measurement: Measurement
    verdict: str
    why: str
    quick: bool = False
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        c, m = self.claim, self.measurement
        return {"id": c.id, "paper": c.paper, "where": c.where, "quote": c.quote, "measure": c.measure,
                "unit": c.unit, "paper_value": c.paper_value, "kind": c.kind, "rule": c.rule.as_dict(),
                "rule_text": c.rule.text(c.unit), "effect": m.effect, "lo": m.lo, "hi": m.hi, "n": m.n,
                "level": m.level, "verdict": self.verdict, "why": self.why, "quick": self.quick,
                "details": self.details}


def judge(claim: Claim, m: Measurement, quick: bool = False, **details) -> Result:
    verdict, why = decide(claim.rule, m)
    return Result(claim, m, verdict, why, quick, details)


def verdict_of(row: dict) -> str:
    """The verdict a ``claims.json`` row's numbers give under its stated rule."""
    rule = Rule(**row["rule"])
    return decide(rule, Measurement(row["effect"], row["lo"], row["hi"], row["n"], row["level"]))[0]


def across_seeds(values, level: float = 0.95) -> Measurement:
    """Mean of independent per-seed values with its t interval (no interval for n < 2)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return Measurement(math.nan, math.nan, math.nan, 0, level)
    mean, half = mean_ci(v, level)
    return Measurement(mean, mean - half, mean + half, len(v), level)


def ratio_across_seeds(ratios, level: float = 0.95) -> Measurement:
    """Geometric mean of per-seed ratios, its t interval taken on the log scale and mapped back."""
    logs = [math.log(r) for r in ratios if r > 0 and math.isfinite(r)]
    m = across_seeds(logs, level)
    return Measurement(math.exp(m.effect) if m.n else math.nan, math.exp(m.lo), math.exp(m.hi), m.n, level)


def missing(claim: Claim, why: str, quick: bool = False) -> Result:
    """A claim that could not be measured: inconclusive, saying why."""
    return Result(claim, Measurement(math.nan, math.nan, math.nan, 0), INCONCLUSIVE, why, quick)
