"""grpolab's GRPO step against TRL's ``GRPOTrainer``, side by side in one process.

    python -m benchmarks.trl_compare [--quick] [--threads 1] [--steps 16] [--prompts 64]
                                     [--max-new-tokens 8] [--mu 1] [--profile] [--out PATH] [--json PATH]

Both trainers start from the cached SFT warm start of the default tiny Qwen2 (the same checkpoint
and tokenizer, two copies of the weights) and train on the same arithmetic prompts with the task's
verifier as the reward (wrapped as a TRL reward function), with the same G, prompts per step,
completion cap, μ, mini-/micro-batch layout, token-mean loss, clip, AdamW settings and no
reference model. Each trains continuously (no weight resets), so the two policies drift apart a
little over the run; at lr 5e-5 and a dozen steps that changes no shape the step processes.

TRL runs its own ``Trainer.train()`` loop; a ``TrainerCallback`` fires at every GRPO-step boundary
(every μ·B/mini optimizer steps) and runs one grpolab step there, so the two alternate
TRL, grpolab, TRL, grpolab, ... and every step of either follows a step of the other. A TRL step is
the wall time between two boundaries with the grpolab step taken out: data loading, generation,
scoring, the update, and the Trainer loop's own overhead. Its phases come from wrapping TRL's
methods: ``_generate_and_score_completions`` (sampling, rewards, the π_old forward, advantages) is
its rollout+scoring, the rest of the step its update; ``model.generate`` is sampling alone, timed
the same way in both. grpolab's phases are its own ``time/*`` metrics.

Throughput counts completion tokens (up to and including EOS: the tokens the loss sees) of the
step's batch, and also total tokens (plus the prompts' non-pad tokens); per step, tokens/s =
tokens / step time. Figures are medians over the measured steps; a ratio is the median over
rounds of grpolab tokens/s ÷ TRL tokens/s in the same round, with a 90% bootstrap interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny model is local; any hub access is a bug
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ACCELERATE_USE_CPU", "true")
# trl warns on import that it was tested with older vLLM releases; TRL runs here without vLLM
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")

import torch  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from benchmarks.grpolab_setup import grpolab_config  # noqa: E402
from benchmarks.machine import date_fact, load_fact  # noqa: E402
from benchmarks.profiling import framework_text  # noqa: E402
from benchmarks.report import write_json, write_text  # noqa: E402
from benchmarks.trl_arm import trl_available  # noqa: E402
from benchmarks.trl_interleave import Grpolab, Interleave, build_trl, callback  # noqa: E402
from benchmarks.trl_report import render, summarize  # noqa: E402
from benchmarks.trl_settings import Settings  # noqa: E402
from sweeps.compose import compose  # noqa: E402
from trainer.provenance import REPO_ROOT  # noqa: E402
from trainer.sft import warm_start_dir  # noqa: E402
from trainer.tasks import build_task  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "trl_compare.md"
QUICK_STEPS = 4


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.trl_compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} measured steps (≈ 1 min); overrides --steps")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--steps", type=int, default=16, help="measured GRPO steps of each, after the warm-up (default 16)")
    p.add_argument("--warmup", type=int, default=1, help="GRPO steps of each before measuring (default 1)")
    p.add_argument("--prompts", type=int, default=None, help="prompts per step (default: the config's, 64)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="completion cap (default: the config's, 8)")
    p.add_argument("--mu", type=int, default=1, help="passes over each rollout batch (default 1)")
    p.add_argument("--minibatches", type=int, default=2,
                   help="optimizer steps per pass (default 2: the default config's 512 / 256)")
    p.add_argument("--micro", type=int, default=None, help="micro-batch size (default: the config's, 128)")
    p.add_argument("--profile", action="store_true",
                   help="after measuring, cProfile one more step of each and print the top entries")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="Markdown report (default benchmarks/results/trl_compare.md)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every round's figures here")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="a grpolab config override (repeatable), e.g. -o algorithm.old_logp_source=rollout")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = QUICK_STEPS
    for name in ("threads", "steps", "mu", "minibatches"):
        if getattr(args, name) < 1:
            p.error(f"--{name}={getattr(args, name)}: must be >= 1")
    if args.warmup < 0:
        p.error(f"--warmup={args.warmup}: must be >= 0")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    missing = trl_available()
    if missing:
        print(f"[bench] {missing}", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()

    base = compose([])
    cfg = grpolab_config(args.prompts or base.rollout.prompts_per_step,
                         args.max_new_tokens or base.rollout.max_new_tokens,
                         args.mu, args.minibatches, args.micro, tuple(args.override))
    s = Settings.of(cfg)
    task = build_task(cfg.task)
    init_dir = warm_start_dir(cfg, task)
    # whole steps per epoch on both sides: TRL's sampler drops a partial last batch, grpolab's stream would wrap
    examples = task.train[: len(task.train) // s.prompts * s.prompts]
    if not examples:
        raise SystemExit(f"--prompts={s.prompts}: more than the task's {len(task.train)} training prompts")

    grpolab = Grpolab.build(cfg, init_dir, task, examples)
    rounds = args.warmup + args.steps + (1 if args.profile else 0)
    with tempfile.TemporaryDirectory(prefix="trl_compare_") as out_dir:
        trl_trainer = build_trl(s, init_dir, task, examples, out_dir, rounds * s.optimizer_steps, cfg.seed)
        torch.set_num_threads(args.threads)
        inter = Interleave(s, trl_trainer, grpolab, rounds, args.warmup,
                           args.warmup + args.steps if args.profile else None)
        trl_trainer.add_callback(callback(inter))
        from transformers.trainer_callback import PrinterCallback

        trl_trainer.remove_callback(PrinterCallback)  # it prints the end-of-training summary dict
        print(f"[bench] both trainers ready in {time.perf_counter() - t_start:.1f}s; {s.prompts} prompts × {s.n}, "
              f"{args.warmup} warm-up + {args.steps} measured steps each, alternating", flush=True)
        t_loop = time.perf_counter()
        trl_trainer.train()
        loop_s = time.perf_counter() - t_loop

    rows = inter.rows[args.warmup:]
    if len(rows) != args.steps:
        raise SystemExit(f"measured {len(rows)} rounds, expected {args.steps}: TRL's loop ended early")
    checks = {
        "TRL generations per GRPO step": sorted({r["trl"]["rollout_calls"] for r in rows}),
        "model.generate calls per step (TRL, grpolab)": (sorted({r["trl"]["generate_calls"] for r in rows}),
                                                         sorted({r["grpolab"]["generate_calls"] for r in rows})),
        "grpolab optimizer steps per GRPO step": sorted({r["grpolab"]["optimizer_steps"] for r in rows}),
    }
    table, e2e = summarize(rows)
    facts = dict([
        ("rounds", f"{args.warmup} warm-up + {args.steps} measured; TRL and grpolab alternate, "
                   "one GRPO step each per round"),
        ("consistency", "; ".join(f"{k}: {v}" for k, v in checks.items())),
        ("mean reward over the measured steps (grpolab, TRL)",
         f"{statistics.mean(r['grpolab']['reward'] for r in rows):.3f}, "
         f"{statistics.mean(r['trl']['reward'] for r in rows):.3f}"),
        load_fact(load_start),
        ("run time", f"{time.perf_counter() - t_start:.0f}s (of which the alternating loop {loop_s:.0f}s)"),
        date_fact(),
    ])
    threads_seen = {r["threads"] for r in inter.rows}
    report = render(argv, args.threads, threads_seen, s, facts, table, e2e, tuple(args.override))
    print()
    print(report)
    for name, title in (("trl", "TRL GRPOTrainer"), ("grpolab", "grpolab")):
        if name in inter.profiles:
            print(framework_text(f"{title}: one GRPO step", inter.profiles[name]))
    write_text(args.out, report + "\n")
    if args.json:
        write_json(args.json, {"settings": s.lines(), "facts": facts, "rounds": inter.rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
