"""Simulated sweeps with a known truth: how often the table marks a difference that is not there
(family-wise error), how often it finds one that is (power), and whether the Δ intervals cover.

    python -m analysis.simulate [--tables 4000] [--seeds 5] [--prompts 32]

Model of one table (K cells, S seeds, P held-out prompts, eval_n samples per prompt), on the logit
scale of a prompt's accuracy:

    logit p[k, s, q] = μ + δ_k + u_s + e[k, s] + b_q
    u_s ~ N(0, σ_seed²)     shared by every cell of seed s (same warm start, same prompt order)
    e   ~ N(0, σ_run²)      the cell's own training noise
    b_q ~ N(0, σ_prompt²)   prompt difficulty, shared by every run
    correct[k, s, q] ~ Binomial(eval_n, p[k, s, q])   (independent draws: no common random numbers)

Cell 0 is the baseline; δ_k = 0 under the null. ``records`` turns one simulated table into the
records frame and per-prompt outcomes that ``analysis.summary.summarize`` (the table's own code) reads;
``rejections`` is the same pipeline vectorised over thousands of tables (the tests check they agree).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.multiplicity import adjust_matrix
from analysis.paired import hierarchical_bootstrap_ci, paired_t_p, sign_flip_p
from analysis.stats import welch_p


@dataclass(frozen=True)
class Design:
    cells: int = 10
    seeds: int = 5
    prompts: int = 32
    eval_n: int = 4
    mu: float = 0.0
    sigma_seed: float = 0.3
    sigma_run: float = 0.1
    sigma_prompt: float = 1.0


def simulate(design: Design, tables: int, effects=None, rng=None) -> np.ndarray:
    """Per-prompt accuracies [tables, cells, seeds, prompts] (``effects``: δ per cell, logits)."""
    d = design
    rng = rng if rng is not None else np.random.default_rng(0)
    delta = np.zeros(d.cells) if effects is None else np.asarray(effects, dtype=float)
    u = rng.normal(0, d.sigma_seed, (tables, 1, d.seeds, 1))
    e = rng.normal(0, d.sigma_run, (tables, d.cells, d.seeds, 1))
    b = rng.normal(0, d.sigma_prompt, (tables, 1, 1, d.prompts))
    p = 1 / (1 + np.exp(-(d.mu + delta[None, :, None, None] + u + e + b)))
    return rng.binomial(d.eval_n, p) / d.eval_n


def rejections(acc: np.ndarray, test: str = "paired-t", correction: str = "holm", alpha: float = 0.05) -> np.ndarray:
    """[tables, cells − 1]: which comparisons with cell 0 the table marks (corrected p < alpha)."""
    run = acc.mean(-1)  # [T, K, S]: each run's eval accuracy
    if test == "welch":
        p = np.array([[welch_p(t[k], t[0]) for k in range(1, t.shape[0])] for t in run])
    else:
        d = run[:, 1:] - run[:, :1]  # [T, K−1, S] per-seed paired differences
        p = paired_t_p(d) if test == "paired-t" else sign_flip_p(d)
    p = np.where(np.isfinite(p), p, 1.0)
    return adjust_matrix(p, correction) < alpha


def records(acc: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """One simulated table [cells, seeds, prompts] as a records frame (swept key ``cell``; metric
    ``final_eval_accuracy``) and its per-prompt outcomes, as ``analysis.table.build_table`` reads them."""
    cells, seeds, prompts = acc.shape
    ids = [f"{q}:sim" for q in range(prompts)]
    rows, outcomes = [], {}
    for k in range(cells):
        for s in range(seeds):
            rows.append({"run_dir": f"c{k}_s{s}", "seed": s, "status": "completed", "cell": k,
                         "final_eval_accuracy": float(acc[k, s].mean())})
            outcomes[len(rows) - 1] = (ids, acc[k, s].tolist())
    df = pd.DataFrame(rows)
    df.attrs.update(swept_keys=["cell"], metric_keys=["final_eval_accuracy"], value_order={"cell": list(range(cells))},
                    plan_first={"cell": 0})
    return df, {"final_eval_accuracy": outcomes}


def coverage(design: Design, comparisons: int, n_boot: int = 500, rng=None) -> float:
    """Share of null comparisons (Δ = 0) whose hierarchical bootstrap interval contains 0."""
    acc = simulate(Design(**{**design.__dict__, "cells": 2}), comparisons, rng=rng)
    d = acc[:, 1] - acc[:, 0]  # [comparisons, seeds, prompts]
    boot_rng = np.random.default_rng(1)
    hits = [lo <= 0 <= hi for lo, hi in (hierarchical_bootstrap_ci(x, n_boot=n_boot, rng=boot_rng) for x in d)]
    return float(np.mean(hits))


def ci_width_ratios(design: Design, tables: int, n_boot: int = 500, rng=None) -> dict:
    """Per comparison with the baseline, through ``summarize``: the width of the paired Δ interval (the
    table's hierarchical bootstrap; and the paired t interval over seeds) over the Welch interval's."""
    from analysis.stats import t_quantile
    from analysis.summary import summarize

    m, out = "final_eval_accuracy", {"bootstrap/welch": [], "paired-t/welch": []}
    for acc in simulate(design, tables, rng=rng if rng is not None else np.random.default_rng(5)):
        df, prompts = records(acc)
        paired = summarize(df, [m], ["cell"], prompts=prompts, n_boot=n_boot).iloc[1:]
        welch = summarize(df, [m], ["cell"], test="welch").iloc[1:]
        width = (welch[f"{m}/delta_hi"] - welch[f"{m}/delta_lo"]).to_numpy()
        d = acc.mean(-1)[1:] - acc.mean(-1)[:1]  # [cells − 1, seeds]
        t_width = 2 * t_quantile(0.975, design.seeds - 1) * d.std(-1, ddof=1) / np.sqrt(design.seeds)
        ok = width > 0
        width = np.where(ok, width, 1.0)
        out["bootstrap/welch"] += list(((paired[f"{m}/delta_hi"] - paired[f"{m}/delta_lo"]).to_numpy() / width)[ok])
        out["paired-t/welch"] += list((t_width / width)[ok])
    return {k: np.array(v) for k, v in out.items()}


def study(design: Design, tables: int, effect: float = 0.25, affected: int = 3) -> dict:
    """FWER of each test under the null, and per-comparison power with ``effect`` (logits) in the first
    ``affected`` non-baseline cells; each figure with its Monte-Carlo standard error."""
    out = {}
    null = simulate(design, tables, rng=np.random.default_rng(11))
    for test in ("paired-t", "sign-flip", "welch"):
        for corr in ("holm", "none"):
            fwer = rejections(null, test, corr).any(-1).mean()
            out[f"fwer/{test}/{corr}"] = (float(fwer), float(np.sqrt(fwer * (1 - fwer) / tables)))
    effects = np.zeros(design.cells)
    effects[1:1 + affected] = effect
    alt = simulate(design, tables, effects, rng=np.random.default_rng(12))
    for test in ("paired-t", "sign-flip", "welch"):
        power = rejections(alt, test, "holm")[:, :affected].mean()
        out[f"power/{test}"] = (float(power), float(np.sqrt(power * (1 - power) / (tables * affected))))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.simulate", description=__doc__.splitlines()[0])
    p.add_argument("--tables", type=int, default=4000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--effect", type=float, default=0.25, help="true effect (logits) in cells 1-3")
    p.add_argument("--ci-ratio", action="store_true",
                   help="instead: paired vs Welch Δ interval widths at demo scale (4 cells; 2, 4, 10 seeds)")
    args = p.parse_args(argv)
    if args.ci_ratio:
        for seeds in (2, 4, 10):
            for key, r in ci_width_ratios(Design(cells=4, seeds=seeds, prompts=args.prompts), 150).items():
                print(f"ci width {key:16s} seeds={seeds:<2d} median {np.median(r):.2f} "
                      f"(IQR {np.quantile(r, 0.25):.2f}-{np.quantile(r, 0.75):.2f}), {len(r)} comparisons")
        return 0
    design = Design(seeds=args.seeds, prompts=args.prompts)
    print(f"{design}, {args.tables} tables")
    for key, (value, se) in study(design, args.tables, args.effect).items():
        print(f"{key:28s} {value:.4f} ± {se:.4f} (MC SE)")
    for sigma_run in (design.sigma_run, 3 * design.sigma_run):
        for seeds in (2, 3, 5, 10):
            cov = coverage(Design(seeds=seeds, prompts=args.prompts, sigma_run=sigma_run), 400)
            print(f"coverage/bootstrap 95%/sigma_run={sigma_run:g}/seeds={seeds:<2d} {cov:.3f} (400 null comparisons)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
