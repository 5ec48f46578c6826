"""The power planner against a known truth: predicted power (``analysis.power``, given the true SD of
the per-seed paired differences) vs the rejection rate of the table's own pipeline on simulated tables
(``analysis.simulate``: paired t per comparison, Holm over the table).

    python -m analysis.power_check [--tables 2000] [--effect 0.5]

One cell of ``cells`` differs from the baseline by ``effect`` logits; the others equal it. The truth
(Δ and SD in accuracy units) comes from a large simulation of two-cell tables: Δ the mean per-seed
difference, SD = √(mean within-table variance of the per-seed differences), what the paired t's s²
estimates.
"""
from __future__ import annotations

import argparse

import numpy as np

from analysis.power import plan_paired, planning_alpha
from analysis.simulate import Design, rejections, simulate


def true_difference(effect: float, design: Design = Design(), tables: int = 5000,
                    seed: int = 21) -> tuple[float, float]:
    """(Δ, SD) of the per-seed paired differences of a cell ``effect`` logits above the baseline."""
    two = Design(**{**design.__dict__, "cells": 2, "seeds": 10})
    acc = simulate(two, tables, [0.0, effect], rng=np.random.default_rng(seed))
    d = acc.mean(-1)[:, 1] - acc.mean(-1)[:, 0]  # [tables, seeds]
    return float(d.mean()), float(np.sqrt(d.var(-1, ddof=1).mean()))


def simulated_power(effect: float, cells: int, seeds: int, tables: int, correction: str = "holm",
                    design: Design = Design(), affected: int = 1) -> float:
    """Share of the comparisons of the first ``affected`` cells after the baseline (``effect`` logits;
    the other cells equal the baseline) that survive ``correction`` over the cells − 1 comparisons of
    their table, over ``tables`` simulated tables."""
    return float(simulated_rejections(effect, cells, seeds, tables, correction, design, affected).mean())


def simulated_rejections(effect: float, cells: int, seeds: int, tables: int, correction: str = "holm",
                         design: Design = Design(), affected: int = 1) -> np.ndarray:
    """[tables, affected]: which of the affected cells' comparisons the simulated tables mark."""
    effects = np.zeros(cells)
    effects[1:1 + affected] = effect
    sim = Design(**{**design.__dict__, "cells": cells, "seeds": seeds})
    acc = simulate(sim, tables, effects, rng=np.random.default_rng(100 * cells + seeds + 10_000 * (affected - 1)))
    return rejections(acc, "paired-t", correction)[:, :affected]


def predicted_power(delta: float, sd: float, cells: int, seeds: int, correction: str = "holm") -> float:
    return plan_paired(sd, seeds, delta, planning_alpha(0.05, cells - 1, correction)).power


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.power_check", description=__doc__.splitlines()[0])
    p.add_argument("--tables", type=int, default=2000)
    p.add_argument("--effect", type=float, default=0.5, help="true effect of cell 1 (logits)")
    args = p.parse_args(argv)
    delta, sd = true_difference(args.effect)
    print(f"{Design()}; effect {args.effect} logits: true Δ = {delta:.4f}, SD of per-seed differences = {sd:.4f}")
    print("| cells (m) | seeds | predicted | simulated ± MC SE |\n|---:|---:|---:|---:|")
    for cells in (2, 10):
        for seeds in (3, 4, 5, 6, 8, 10):
            pred = predicted_power(delta, sd, cells, seeds)
            sim = simulated_power(args.effect, cells, seeds, args.tables)
            print(f"| {cells} ({cells - 1}) | {seeds} | {pred:.3f} | {sim:.3f} ± {_se(sim, args.tables):.3f} |")
    print("\nHolm when several cells differ (10 cells, m = 9; the planner's α/m is Holm's first step only):")
    print("| cells with the effect | seeds | predicted | simulated ± MC SE |\n|---:|---:|---:|---:|")
    for affected in (3, 9):
        for seeds in (5, 8):
            pred = predicted_power(delta, sd, 10, seeds)
            per_table = simulated_rejections(args.effect, 10, seeds, args.tables, affected=affected).mean(-1)
            se = per_table.std(ddof=1) / np.sqrt(args.tables)  # a table's comparisons are correlated
            print(f"| {affected} | {seeds} | {pred:.3f} | {per_table.mean():.3f} ± {se:.3f} |")
    return 0


def _se(rate: float, n: int) -> float:
    return float(np.sqrt(rate * (1 - rate) / n))


if __name__ == "__main__":
    raise SystemExit(main())
