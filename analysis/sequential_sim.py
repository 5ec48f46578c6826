"""How often adaptive seeding marks a null difference: ``analysis.sequential``'s rule against naive
peeking (every look at the full α) and a fixed number of seeds, on ``analysis.simulate``'s model.

    python -m analysis.sequential_sim [--tables 4000] [--declared 2] [--step 2] [--max-seeds 10]

A simulated table has ``max_seeds`` seeds per cell; look l sees the first n_l of them (the sweep adds
seeds in the same order to every open cell), and the paired t-test over per-seed differences with
the baseline (cell 0) is what the table computes at that look.
"""
from __future__ import annotations

import argparse

import numpy as np

from analysis.paired import paired_t_p
from analysis.sequential import ALPHA, AdaptiveDesign, naive_rejections, sequential_rejections
from analysis.simulate import Design, simulate


def look_p(acc: np.ndarray, design: AdaptiveDesign) -> np.ndarray:
    """[tables, looks, cells − 1] paired-t p-values vs cell 0 on the seeds of each look."""
    run = acc.mean(-1)  # [T, K, S]
    d = run[:, 1:] - run[:, :1]
    p = np.stack([paired_t_p(d[..., :len(design.seeds_at(k))]) for k in range(1, design.looks + 1)], axis=1)
    return np.where(np.isfinite(p), p, 1.0)


def study(design: AdaptiveDesign, tables: int, cells: int = 10, effects=None, seed: int = 21) -> dict:
    """Family-wise rate (any comparison declared) of the rule, of naive peeking and of one look at the
    planned maximum of seeds, each with its Monte-Carlo SE; the mean seeds a non-baseline cell ran;
    with ``effects``, the share of true differences the rule declares."""
    acc = simulate(Design(cells=cells, seeds=design.max_seeds), tables, effects, rng=np.random.default_rng(seed))
    p = look_p(acc, design)
    rule = sequential_rejections(p, design.looks, design.alpha)
    naive = naive_rejections(p, design.alpha)
    fixed = sequential_rejections(p[:, -1:], 1, design.alpha)
    n_at = np.array([0] + [len(design.seeds_at(k)) for k in range(1, design.looks + 1)])
    seeds_used = np.where(rule > 0, n_at[rule], design.max_seeds)
    out = {}
    for name, declared in (("rule", rule), ("naive", naive), ("fixed", fixed)):
        null = declared > 0 if effects is None else (declared > 0)[:, np.asarray(effects)[1:] == 0]
        rate = float(null.any(-1).mean()) if null.shape[-1] else 0.0
        out[f"fwer/{name}"] = (rate, float(np.sqrt(rate * (1 - rate) / tables)))
        if effects is not None:
            hit = (declared > 0)[:, np.asarray(effects)[1:] != 0].mean()
            n_true = tables * int((np.asarray(effects)[1:] != 0).sum())
            out[f"power/{name}"] = (float(hit), float(np.sqrt(hit * (1 - hit) / n_true)))
    out["mean seeds per cell/rule"] = (float(seeds_used.mean()), float(seeds_used.std() / np.sqrt(seeds_used.size)))
    if effects is not None:
        real = seeds_used[:, np.asarray(effects)[1:] != 0]
        out["mean seeds, true Δ/rule"] = (float(real.mean()), float(real.std() / np.sqrt(real.size)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.sequential_sim", description=__doc__.splitlines()[0])
    p.add_argument("--tables", type=int, default=4000)
    p.add_argument("--declared", type=int, default=2, help="seeds of the first look")
    p.add_argument("--step", type=int, default=2, help="seeds added per round")
    p.add_argument("--max-seeds", type=int, default=10)
    p.add_argument("--effect", type=float, default=0.5, help="logits, in 3 of the 9 cells (the power study)")
    args = p.parse_args(argv)
    design = AdaptiveDesign("final_eval_accuracy", list(range(args.declared)), args.max_seeds, args.step, ALPHA)
    print(f"{args.tables} tables of 10 cells; looks at {[len(design.seeds_at(k)) for k in range(1, design.looks + 1)]} "
          f"seeds (L = {design.looks}), α = {ALPHA}")
    effects = np.zeros(10)
    effects[1:4] = args.effect
    for label, eff in (("null", None), (f"effect {args.effect:g} in 3 cells", effects),
                       (f"effect {2 * args.effect:g} in 3 cells", 2 * effects)):
        for key, (value, se) in study(design, args.tables, effects=eff).items():
            print(f"{label:24s} {key:26s} {value:.4f} ± {se:.4f} (MC SE)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
