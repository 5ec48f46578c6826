"""Per-step cost of each algorithm variant against its GRPO baseline, measured side by side.

    python -m benchmarks.variant_overhead [--quick] [--threads 1] [--steps 8] [--prompts 64] [--out PATH]
                                          [--json PATH] [--only NAME ...] [--profile NAME ...]

Every variant is composed with ``sweeps.compose.compose`` from the overrides a user would type, so
it is exactly what ``grpolab train`` runs on the default tiny model and arithmetic task. All
trainers start from the cached SFT warm start (``trainer.sft.warm_start_dir``, default cache dir:
built once, then reused) and, before every step, get the same initial weights back and a fresh
optimizer, so every measurement is one step from the same state. The sampling RNG is a function of
(seed, step), so at a given step index every variant samples the same rollouts (checked below).

These machines are noisy (2 cores shared with other work), so the variants run round-robin in one
process, one step each per round in a fresh random order every round, after one warm-up round.
Times are medians over the measured rounds; a ratio is the median over rounds of
(variant / its baseline in the same round), with a 90% bootstrap interval; an identical copy of the
baseline (``grpo_again``) shows the noise floor. Goals (step or update time ≤ k × baseline) are
judged on the median ratio and flagged "within noise" when the interval crosses the goal.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import gc
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny model is local; any hub access is a bug
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers.utils import logging as transformers_logging

from benchmarks.grpolab_setup import build_trainer
from benchmarks.machine import date_fact, load_fact
from benchmarks.profiling import project_listing
from benchmarks.report import write_json, write_text
from benchmarks.variant_cases import Case, cases, select
from benchmarks.variant_report import PHASES, render, summarize
from sweeps.compose import compose
from trainer.config import Config
from trainer.grpo import GRPOTrainer
from trainer.provenance import REPO_ROOT
from trainer.run import PromptStream
from trainer.sft import warm_start_dir
from trainer.tasks import build_task

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "variant_overhead.md"
WARMUP = 1  # rounds before measuring (first-call allocations, lazy imports)
STEPS, QUICK_STEPS = 8, 4  # measured rounds: default and --quick


# ---------------------------------------------------------------- trainers
@dataclass
class Runner:
    case: Case
    cfg: Config
    trainer: GRPOTrainer
    fresh_optimizer: dict
    rows: list[dict] = field(default_factory=list)  # one per measured round

    @classmethod
    def build(cls, case: Case, cfg: Config, init_dir: Path, task) -> "Runner":
        """A trainer assembled as ``trainer.run.run_training`` does, from the warm start."""
        trainer = build_trainer(cfg, init_dir, task)
        return cls(case, cfg, trainer, copy.deepcopy(trainer.engine.optimizer.state_dict()))

    def reset(self, weights: dict) -> None:
        """The initial weights and a fresh optimizer: every step starts from the same state."""
        self.trainer.policy.load_state_dict(weights)
        self.trainer.engine.optimizer.load_state_dict(copy.deepcopy(self.fresh_optimizer))
        self.trainer.policy.zero_grad(set_to_none=True)

    def step(self, weights: dict, examples, step: int) -> dict[str, float]:
        """One ``trainer.step`` from the initial state, plus its process CPU time (``cpu/step_s``)."""
        self.reset(weights)
        gc.collect()
        c0 = time.process_time()
        m = self.trainer.step(examples, step)
        return {**m, "cpu/step_s": time.process_time() - c0}


def profile_step(runner: Runner, weights: dict, examples, step: int, top: int = 22) -> str:
    """cProfile one step: cumulative time of the project's own functions (where the step's time goes,
    by phase), then the functions anywhere with the most own time."""
    runner.reset(weights)
    gc.collect()
    prof = cProfile.Profile()
    prof.enable()
    m = runner.trainer.step(examples, step)
    prof.disable()
    lines = [f"== {runner.case.name}: step {m['time/step_s']:.3f}s (rollout+scoring {m['time/rollout_s']:.3f}s, "
             f"update {m['time/update_s']:.3f}s) under cProfile"]
    return "\n".join(lines + project_listing(prof, top)) + "\n"


# ---------------------------------------------------------------- main
def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.variant_overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"measured steps per variant, after 1 warm-up round (default {STEPS}; "
                        f"{QUICK_STEPS} with --quick)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_STEPS} measured rounds instead of {STEPS} (what `python -m benchmarks` runs): "
                        "about half the time, wider intervals")
    p.add_argument("--prompts", type=int, default=None,
                   help="prompts per rollout batch (default: the config's rollout.prompts_per_step, 64); "
                        "a multiple of 4")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help="measure only these variants (their baselines are added)")
    p.add_argument("--profile", nargs="+", default=[], metavar="NAME",
                   help="after measuring, cProfile one step of each NAME and of its baseline")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="Markdown report (default benchmarks/results/variant_overhead.md)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every round's times here")
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = QUICK_STEPS if args.quick else STEPS
    if args.threads < 1:
        p.error(f"--threads={args.threads}: must be >= 1")
    if args.steps < 1:
        p.error(f"--steps={args.steps}: must be >= 1")
    if args.prompts is not None and (args.prompts < 4 or args.prompts % 4):
        p.error(f"--prompts={args.prompts}: must be a positive multiple of 4 "
                "(4 mini-batches of whole groups for batching.mode=query_preserved)")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    transformers_logging.disable_progress_bar()

    base = compose([])
    prompts = args.prompts or base.rollout.prompts_per_step
    n = base.rollout.n
    default_minibatches = base.rollout.prompts_per_step * n // base.batching.mini_batch_size
    chosen = cases(prompts, n, base.batching.micro_batch_size, default_minibatches)
    if args.only or args.profile:
        chosen = select(chosen, set(args.only or (c.name for c in chosen)) | set(args.profile))
    cfgs = [compose(list(c.overrides)) for c in chosen]

    task = build_task(cfgs[0].task)
    init_dir = warm_start_dir(cfgs[0], task)  # built once in the default cache dir, then reused
    for c, cfg in zip(chosen, cfgs):
        if warm_start_dir(cfg, task, log=lambda *a: None) != init_dir:
            raise SystemExit(f"variant {c.name}: its overrides change the model, task or SFT config, "
                             f"so it would not start from the same policy as {chosen[0].name}")
    runners = [Runner.build(c, cfg, init_dir, task) for c, cfg in zip(chosen, cfgs)]
    weights = {k: v.detach().clone() for k, v in runners[0].trainer.policy.state_dict().items()}
    stream = PromptStream(task.train, prompts, base.seed)
    print(f"[bench] {len(runners)} trainers ready in {time.perf_counter() - t_start:.1f}s; "
          f"{prompts} prompts × {n} responses; {WARMUP} warm-up + {args.steps} measured rounds", flush=True)

    rollouts_seen: dict[int, set] = {}  # step -> distinct (reward, length) seen: one if rollouts agree
    for rnd in range(WARMUP + args.steps):
        step = rnd + 1  # same step index for every variant in a round: same prompts, same sampling RNG
        examples = stream.at(step)
        t0 = time.perf_counter()
        order = runners[:]
        random.Random(rnd).shuffle(order)  # a fresh order each round: position effects become noise, not bias
        for r in order:
            m = r.step(weights, examples, step)
            rollouts_seen.setdefault(step, set()).add((m["train/reward"], m["train/response_length"]))
            if rnd >= WARMUP:
                r.rows.append({key: m[key] for key in PHASES + ("cpu/step_s", "train/updated")})
        print(f"[bench] round {rnd + 1}/{WARMUP + args.steps}{' (warm-up)' if rnd < WARMUP else ''}: "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
    measured_s = time.perf_counter() - t_start

    profiles = []
    for name in args.profile:
        r = next(x for x in runners if x.case.name == name)
        for x in [r] + [b for b in runners if b.case.name == r.case.baseline]:
            profiles.append(profile_step(x, weights, stream.at(WARMUP + 1), WARMUP + 1))

    rows = [row for r in runners for row in r.rows]
    profiling_s = time.perf_counter() - t_start - measured_s
    facts = dict([
        ("rollout batch", f"{prompts} prompts × {n} responses = {prompts * n} "
                          f"(max {base.rollout.max_new_tokens} new tokens)"),
        ("warm start", str(init_dir)),
        ("rounds", f"{WARMUP} warm-up + {args.steps} measured; {len(runners)} trainers, one step each per round, "
                   "in a random order"),
        ("same rollouts in every variant at each step",
         "yes" if all(len(v) == 1 for v in rollouts_seen.values()) else "NO"),
        ("CPU time / wall time of the steps",
         f"{sum(x['cpu/step_s'] for x in rows) / sum(x['time/step_s'] for x in rows):.3f}"),
        load_fact(load_start),
        ("run time", f"{measured_s:.0f}s" + (f" (+{profiling_s:.0f}s profiling)" if profiles else "")),
        date_fact(),
    ])
    report = render(argv, args.threads, facts, summarize(runners))
    print()
    print(report)
    for text in profiles:
        print(text)
    write_text(args.out, report + "\n")
    if args.json:
        write_json(args.json, {"facts": facts, "overrides": {r.case.name: list(r.case.overrides) for r in runners},
                               "rounds": {r.case.name: r.rows for r in runners}})
    print(f"[bench] total {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
