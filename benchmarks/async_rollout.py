"""Synchronous against lagged (``rollout.async_steps``) GRPO steps, side by side in one process.

    python -m benchmarks.async_rollout [--quick] [--rounds 3] [--steps 8] [--prompts 64]
                                       [--max-new-tokens 8] [--out PATH]

Arms, each a fresh trainer from the cached SFT warm start of the default tiny Qwen2, at the
trl_compare sizes (64 prompts × 8, 2 optimizer steps per batch):
- ``sync@2``: k = 0, 2 torch threads (today's step on the 2-core box);
- ``sync@1``: k = 0, 1 thread (its phases give the overlap bound);
- ``k=1@1``, ``k=2@1``: the trainer at 1 thread and the worker process at 1 thread, sampling ahead;
- ``k=1@2``: the trainer at 2 threads beside the 1-thread worker (3 threads on 2 cores);
- ``trl@1``, ``trl@2``: TRL's ``GRPOTrainer`` with trl_compare's settings (``benchmarks/trl_arm.py``),
  at 1 and 2 threads; the better of the two in a round is the baseline of the "÷ TRL best" column.
  Without TRL installed (the ``bench`` extra) these arms are left out and the report says so.
Every round runs every arm once, in a rotated order, for ``--steps`` measured steps after one warm-up
step (the worker's start is not timed). Throughput is completion tokens / wall time of the measured
steps; a ratio is the median over rounds of an arm's tokens/s ÷ sync@2's in the same round. The
bound overlap can reach is max(rollout, update) of sync@1's step (each phase on its own core).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers.utils import logging as transformers_logging

from benchmarks.grpolab_setup import build_trainer, grpolab_config
from benchmarks.machine import date_fact, load_fact
from benchmarks.report import write_text
from benchmarks.trl_arm import run_trl_arm, trl_available
from trainer.provenance import REPO_ROOT
from trainer.rollout.lagged import LaggedRollout
from trainer.rollout.lagged_sampler import ProcessSampler
from trainer.run import PromptStream
from trainer.sft import warm_start_dir
from trainer.tasks import build_task

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "async_rollout.md"
GRPOLAB_ARMS = ("sync@2", "sync@1", "k=1@1", "k=2@1", "k=1@2")
TRL_ARMS = ("trl@1", "trl@2")
GOAL = 1.8  # k=1 against TRL's best


def run_arm(arm: str, cfg, init_dir: Path, task, steps: int) -> dict:
    """One fresh trainer: a warm-up step, then ``steps`` timed ones; tokens/s and mean phase times."""
    head, threads = arm.split("@")
    if head == "trl":
        return run_trl_arm(int(threads), cfg, init_dir, task, steps)
    k = int(head[2:]) if head.startswith("k=") else 0
    torch.set_num_threads(int(threads))
    trainer = build_trainer(cfg, init_dir, task)
    stream = PromptStream(task.train, cfg.rollout.prompts_per_step, cfg.seed)
    if k:
        trainer.rollout = LaggedRollout(trainer.rollout, trainer.policy, ProcessSampler(init_dir, threads=1), k,
                                        cfg.seed, steps + 1, lambda s: [e.prompt for e in stream.at(s)])
    try:
        trainer.step(stream.at(1), 1)
        tokens, rows, t0 = 0.0, [], time.perf_counter()
        for step in range(2, steps + 2):
            m = trainer.step(stream.at(step), step)
            tokens += m["perf/rollout_tokens_per_s"] * m["time/rollout_s"]
            rows.append(m)
        wall = time.perf_counter() - t0
    finally:
        close = getattr(trainer.rollout, "close", None)
        if close:
            close()
    return {"tokens_per_s": tokens / wall, "step_s": wall / steps,
            "rollout_s": statistics.mean(r["time/rollout_s"] for r in rows),
            "update_s": statistics.mean(r["time/update_s"] for r in rows),
            "wait_s": statistics.mean(r.get("async/trainer_wait_s", 0.0) for r in rows),
            "sampler_idle": statistics.mean(r.get("async/sampler_idle_frac", 0.0) for r in rows)}


def ratio(results: dict[str, list[dict]], arm: str, base: list[float]) -> float:
    """Median over rounds of ``arm``'s tokens/s ÷ the baseline's in the same round."""
    return statistics.median(r["tokens_per_s"] / b for r, b in zip(results[arm], base))


def render(results: dict[str, list[dict]], args, facts: list[str], trl_missing: str | None) -> str:
    arms = list(results)
    sync2 = [r["tokens_per_s"] for r in results["sync@2"]]
    trl_best = None if trl_missing else [max(a["tokens_per_s"], b["tokens_per_s"])
                                         for a, b in zip(*(results[t] for t in TRL_ARMS))]
    one = results["sync@1"]
    bound = statistics.median(max(r["rollout_s"], r["update_s"]) for r in one)
    lines = ["# Lagged rollouts against the synchronous step and TRL", "", *facts, "",
             f"{args.prompts} prompts × 8, {args.max_new_tokens} new tokens, {args.rounds} rounds × {args.steps} "
             "measured steps per arm. Ratios: median over rounds of tokens/s ÷ the baseline's in the same round "
             "(TRL best: the better of trl@1 and trl@2 in that round).", "",
             "| arm | completion tokens/s | ÷ sync@2 | ÷ TRL best | step s | trainer waits s | sampler idle |",
             "|---|---|---|---|---|---|---|"]
    for arm in arms:
        rs = results[arm]
        vs_trl = "—" if trl_best is None else f"{ratio(results, arm, trl_best):.2f}×"
        lines.append(f"| {arm} | {statistics.median(r['tokens_per_s'] for r in rs):.0f} | "
                     f"{ratio(results, arm, sync2):.2f}× | {vs_trl} | "
                     f"{statistics.median(r['step_s'] for r in rs):.3f} | "
                     f"{statistics.median(r['wait_s'] for r in rs):.3f} | "
                     f"{statistics.median(r['sampler_idle'] for r in rs):.0%} |")
    lines += ["", f"Overlap bound, max(rollout, update) of sync@1's step: {bound:.3f} s "
              f"(sync@1 rollout {statistics.median(r['rollout_s'] for r in one):.3f} s, update "
              f"{statistics.median(r['update_s'] for r in one):.3f} s)."]
    if trl_best is None:
        lines += ["", f"TRL arms not run: {trl_missing}"]
    else:
        k1 = ratio(results, "k=1@1", trl_best)
        lines += ["", f"k=1@1 ÷ TRL best: {k1:.2f}× (goal ≥ {GOAL:g}×: {'met' if k1 >= GOAL else 'missed'})."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.async_rollout", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 rounds × 4 steps")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 2, 4
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    load_start = os.getloadavg()
    cfg = grpolab_config(args.prompts, args.max_new_tokens, 1, 2, None)
    task = build_task(cfg.task)
    init_dir = warm_start_dir(cfg, task)
    trl_missing = trl_available()
    if trl_missing:
        print(f"[bench] {trl_missing}; the TRL arms are left out", flush=True)
    arms = GRPOLAB_ARMS + (() if trl_missing else TRL_ARMS)
    results: dict[str, list[dict]] = {a: [] for a in arms}
    for r in range(args.rounds):
        for arm in arms[r % len(arms):] + arms[: r % len(arms)]:
            results[arm].append(run_arm(arm, cfg, init_dir, task, args.steps))
            print(f"[bench] round {r + 1} {arm}: {results[arm][-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    text = render(results, args, [f"- {k}: {v}" for k, v in (date_fact(), load_fact(load_start))], trl_missing)
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
