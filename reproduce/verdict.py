"""Verdicts: a claim's measurement (an effect with a confidence interval over n independent units)
against the claim's stated rule. Pure; the report states each rule in words beside its verdict.

A claim says a quantity is above (``greater``) or below (``less``) a threshold t, or within ±m of a
value (``within``, "similar"). With [lo, hi] the interval at the stated level:

    greater t, margin m:   reproduced      lo > t
                           not reproduced  hi < t + m   (the interval rules out an effect of at least m)
                           inconclusive    otherwise
    less t, margin m:      the mirror image (hi < t; lo > t − m)
    within v ± m:          reproduced      v − m ≤ lo and hi ≤ v + m
                           not reproduced  hi < v − m or lo > v + m
                           inconclusive    otherwise

and before any of these: fewer than ``min_n`` units → inconclusive (accuracy claims need 5 seeds),
a non-finite interval → inconclusive. A quick run's verdicts carry ``quick`` and say so.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


class Kind(str, Enum):
    greater = "greater"
    less = "less"
    within = "within"


@dataclass(frozen=True)
class Rule:
    """``kind`` and ``threshold`` (t, or the value v of ``within``); ``margin`` m ≥ 0; ``min_n``: the
    fewest independent units (seeds, probe batches) a verdict other than inconclusive needs."""

    kind: Kind
    threshold: float = 0.0
    margin: float = 0.0
    min_n: int = 2

    def __post_init__(self):
        if not isinstance(self.kind, Kind):
            object.__setattr__(self, "kind", Kind(self.kind))
        if not (self.margin >= 0 and math.isfinite(self.margin)):
            raise ValueError(f"rule margin {self.margin}: must be a finite number >= 0")
        if self.kind == Kind.within and self.margin == 0:
            raise ValueError("a 'within' rule needs a margin > 0")
        if self.min_n < 1:
            raise ValueError(f"rule min_n {self.min_n}: must be >= 1")

    def text(self, unit: str = "") -> str:
        """The rule in words, as the report prints it."""
        t, m, u = _num(self.threshold), _num(self.margin), f" {unit}" if unit else ""
        need = f"; needs n ≥ {self.min_n}"
        if self.kind == Kind.greater:
            why = f" (rules out an effect ≥ {m} above {t})" if self.margin else ""
            edge = _num(self.threshold + self.margin)
            return f"reproduced if CI low > {t}{u}; not reproduced if CI high < {edge}{u}{why}; else inconclusive{need}"
        if self.kind == Kind.less:
            why = f" (rules out an effect ≥ {m} below {t})" if self.margin else ""
            edge = _num(self.threshold - self.margin)
            return f"reproduced if CI high < {t}{u}; not reproduced if CI low > {edge}{u}{why}; else inconclusive{need}"
        return (f"reproduced if the CI lies within {t} ± {m}{u}; not reproduced if it lies wholly outside; "
                f"else inconclusive{need}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = self.kind.value
        return d


@dataclass(frozen=True)
class Measurement:
    """The effect, its interval [lo, hi] at ``level``, and n independent units behind it."""

    effect: float
    lo: float
    hi: float
    n: int
    level: float = 0.95


def decide(rule: Rule, m: Measurement) -> tuple[str, str]:
    """(verdict, why): the verdict and the clause of the rule that decided it."""
    if m.n < rule.min_n:
        return INCONCLUSIVE, f"n = {m.n} < {rule.min_n}"
    if not (math.isfinite(m.lo) and math.isfinite(m.hi)):
        return INCONCLUSIVE, "no finite interval"
    t, mg = rule.threshold, rule.margin
    if rule.kind == Kind.greater:
        if m.lo > t:
            return REPRODUCED, f"CI low {_num(m.lo)} > {_num(t)}"
        if m.hi < t + mg:
            return NOT_REPRODUCED, f"CI high {_num(m.hi)} < {_num(t + mg)}"
        return INCONCLUSIVE, f"CI [{_num(m.lo)}, {_num(m.hi)}] spans {_num(t)}–{_num(t + mg)}"
    if rule.kind == Kind.less:
        if m.hi < t:
            return REPRODUCED, f"CI high {_num(m.hi)} < {_num(t)}"
        if m.lo > t - mg:
            return NOT_REPRODUCED, f"CI low {_num(m.lo)} > {_num(t - mg)}"
        return INCONCLUSIVE, f"CI [{_num(m.lo)}, {_num(m.hi)}] spans {_num(t - mg)}–{_num(t)}"
    lo_ok, hi_ok = t - mg, t + mg
    if lo_ok <= m.lo and m.hi <= hi_ok:
        return REPRODUCED, f"CI [{_num(m.lo)}, {_num(m.hi)}] ⊂ [{_num(lo_ok)}, {_num(hi_ok)}]"
    if m.hi < lo_ok or m.lo > hi_ok:
        return NOT_REPRODUCED, f"CI [{_num(m.lo)}, {_num(m.hi)}] outside [{_num(lo_ok)}, {_num(hi_ok)}]"
    return INCONCLUSIVE, f"CI [{_num(m.lo)}, {_num(m.hi)}] overlaps the edge of [{_num(lo_ok)}, {_num(hi_ok)}]"


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)
