"""Paired ratios with a bootstrap interval, and their verdict against a goal.

Every side-by-side benchmark compares two things in the same round (a variant and its baseline,
grpolab and TRL, grpolab and the bare-torch floor): a ratio per round, summarised by its median
over rounds and a 90% bootstrap interval of that median.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Ratio:
    """Median over rounds of a per-round ratio, and a 90% bootstrap interval of it."""

    median: float
    lo: float
    hi: float

    @classmethod
    def of(cls, ratios: list[float], resamples: int = 2000) -> "Ratio":
        rng = random.Random(0)
        boot = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
        return cls(statistics.median(ratios), boot[int(0.05 * resamples)], boot[int(0.95 * resamples) - 1])

    def text(self) -> str:
        return f"{self.median:.3f} [{self.lo:.2f}, {self.hi:.2f}]"


def verdict(r: Ratio, goal: float, *, at_least: bool = False, miss_note: str = "") -> str:
    """The goal is ``r ≤ goal`` (``r ≥ goal`` with ``at_least``): pass when the whole 90% interval
    meets it, **miss** when none of it does; otherwise pass or miss on the median, "within noise".
    ``miss_note`` follows every "miss" (e.g. by how much)."""
    if at_least:
        met, missed, median_met = r.lo >= goal, r.hi < goal, r.median >= goal
    else:
        met, missed, median_met = r.hi <= goal, r.lo > goal, r.median <= goal
    if met:
        return "pass"
    if missed:
        return "**miss**" + miss_note
    return "pass, within noise" if median_met else "miss" + miss_note + ", within noise"
