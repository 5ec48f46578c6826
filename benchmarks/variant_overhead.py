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
import datetime as dt
import gc
import json
import math
import os
import platform
import pstats
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny model is local; any hub access is a bug
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from benchmarks.machine import code_version_text, cpu_text  # noqa: E402
from sweeps.compose import compose  # noqa: E402
from trainer.config import Config  # noqa: E402
from trainer.engine import build_engine  # noqa: E402
from trainer.grpo import GRPOTrainer  # noqa: E402
from trainer.modeling import load_policy, load_tokenizer  # noqa: E402
from trainer.provenance import REPO_ROOT  # noqa: E402
from trainer.rollout import build_rollout  # noqa: E402
from trainer.run import PromptStream, resolve_device  # noqa: E402
from trainer.sft import warm_start_dir  # noqa: E402
from trainer.tasks import build_task  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "variant_overhead.md"
WARMUP = 1  # rounds before measuring (first-call allocations, lazy imports)
PHASES = ("time/step_s", "time/rollout_s", "time/update_s")
STEPS, QUICK_STEPS = 8, 4  # measured rounds: default and --quick


# ---------------------------------------------------------------- what is measured
@dataclass(frozen=True)
class Goal:
    """The variant's ``phase`` ("step" or "update") may cost at most ``max_ratio`` × its baseline's."""

    phase: str
    max_ratio: float

    def text(self) -> str:
        return f"{self.phase} ≤ {self.max_ratio:g}×"


@dataclass(frozen=True)
class Case:
    name: str
    overrides: tuple[str, ...]
    baseline: Optional[str] = None  # the case it is compared with; None: it is a baseline
    goal: Optional[Goal] = None


def cases(prompts: int, n: int, micro: int, default_minibatches: int) -> list[Case]:
    """The variants and their baselines. Each baseline has the same number of mini-batches
    (= optimizer steps per rollout batch) as the variants compared with it: the default layout
    (``default_minibatches``, 2 at 64 prompts × 8) or 4 mini-batches for the batching modes."""
    batch = prompts * n

    def layout(k: int, diagnostics_every: int = 0) -> tuple[str, ...]:
        mini = batch // k
        return (
            f"rollout.prompts_per_step={prompts}",
            f"batching.mini_batch_size={mini}",
            f"batching.micro_batch_size={math.gcd(mini, micro)}",
            f"diagnostics.every={diagnostics_every}",
        )

    d, q = default_minibatches, 4
    step102, step105, update21 = Goal("step", 1.02), Goal("step", 1.05), Goal("update", 2.1)
    return [
        Case("grpo", ("variant=grpo",) + layout(d)),
        Case("grpo_again", ("variant=grpo",) + layout(d), "grpo"),  # A/A control: the noise floor
        Case("ar", ("variant=ar",) + layout(d), "grpo", step102),
        Case("nthr", ("variant=nthr",) + layout(d), "grpo", step105),
        Case("lopti", ("variant=lopti",) + layout(d), "grpo", update21),
        Case("grpo_fix", ("variant=grpo_fix",) + layout(d), "grpo"),
        Case("reward_balanced", (
            "batching.reward_balanced.enabled=true", "batching.reward_balanced.zero_adv_groups=count",
        ) + layout(d), "grpo"),
        Case("diagnostics", ("variant=grpo",) + layout(d, diagnostics_every=1), "grpo"),
        Case("grpo_mb4", ("variant=grpo",) + layout(q)),
        Case("seqlen_balanced", ("batching.mode=seqlen_balanced",) + layout(q), "grpo_mb4", step102),
        Case("query_preserved", ("batching.mode=query_preserved",) + layout(q), "grpo_mb4", step102),
        Case("sign_segregated", ("batching.mode=sign_segregated",) + layout(q), "grpo_mb4", step102),
        Case("gspo_qb_mb4", ("variant=gspo", "batching=query_preserved") + layout(q)),
        Case("dfpo_min_replace", ("variant=dfpo_min_replace", "batching=query_preserved") + layout(q), "gspo_qb_mb4"),
    ]


# ---------------------------------------------------------------- trainers
@dataclass
class Runner:
    case: Case
    cfg: Config
    trainer: GRPOTrainer
    fresh_optimizer: dict
    rows: list[dict] = field(default_factory=list)  # one per measured round

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


def build_runner(case: Case, cfg: Config, init_dir: Path, task) -> Runner:
    """A trainer assembled as ``trainer.run.run_training`` does, from the warm start."""
    device = resolve_device(cfg.engine.device)
    policy = load_policy(init_dir).to(device)
    tok = load_tokenizer(init_dir)
    ref = load_policy(init_dir).to(device).eval().requires_grad_(False) if cfg.algorithm.kl.coef > 0 else None
    engine = build_engine(cfg.engine.backend.value, policy, cfg.optim)
    rollout = build_rollout(cfg.rollout.backend.value, policy, tok, device)
    trainer = GRPOTrainer(cfg, policy, ref, tok, engine, rollout, task)
    return Runner(case, cfg, trainer, copy.deepcopy(engine.optimizer.state_dict()))


# ---------------------------------------------------------------- summary
@dataclass(frozen=True)
class Ratio:
    """Median over rounds of variant / baseline (same round), and a 90% bootstrap interval of it."""

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


@dataclass
class Result:
    case: Case
    medians: dict[str, float]
    step_ratio: Optional[Ratio] = None
    update_ratio: Optional[Ratio] = None
    updated_frac: float = 1.0

    def verdict(self) -> str:
        """pass / miss on the median ratio; flagged when the 90% interval crosses the goal."""
        g = self.case.goal
        if g is None:
            return "—"
        r = self.step_ratio if g.phase == "step" else self.update_ratio
        over = f" (+{(r.median / g.max_ratio - 1) * 100:.1f}%)"
        if r.hi <= g.max_ratio:
            return "pass"
        if r.lo > g.max_ratio:
            return "**miss**" + over
        return "pass, within noise" if r.median <= g.max_ratio else "miss" + over + ", within noise"


def summarize(runners: list[Runner]) -> list[Result]:
    by_name = {r.case.name: r for r in runners}
    out = []
    for r in runners:
        res = Result(
            r.case,
            {k: statistics.median(row[k] for row in r.rows) for k in PHASES},
            updated_frac=sum(row["train/updated"] for row in r.rows) / len(r.rows),
        )
        if r.case.baseline:
            base = by_name[r.case.baseline].rows
            res.step_ratio = Ratio.of([a["time/step_s"] / b["time/step_s"] for a, b in zip(r.rows, base)])
            res.update_ratio = Ratio.of([a["time/update_s"] / b["time/update_s"] for a, b in zip(r.rows, base)])
        out.append(res)
    return out


def table(results: list[Result]) -> str:
    lines = [
        "| variant | baseline | step s | rollout+scoring s | update s | step × baseline | update × baseline | goal | result |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        m = r.medians
        name = r.case.name + ("" if r.updated_frac == 1 else f" (updated in {r.updated_frac:.0%} of steps)")
        step_x = r.step_ratio.text() if r.step_ratio else "—"
        update_x = r.update_ratio.text() if r.update_ratio else "—"
        lines.append(
            f"| {name} | {r.case.baseline or '*(baseline)*'} | {m['time/step_s']:.3f} | {m['time/rollout_s']:.3f} | "
            f"{m['time/update_s']:.3f} | {step_x} | {update_x} | {r.case.goal.text() if r.case.goal else '—'} | {r.verdict()} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- environment
def environment(threads: int) -> list[tuple[str, str]]:
    import transformers

    return [
        ("torch", torch.__version__),
        ("transformers", transformers.__version__),
        ("python", platform.python_version()),
        ("torch threads", f"{torch.get_num_threads()} (asked {threads}), interop {torch.get_num_interop_threads()}"),
        ("CPU", cpu_text()),
        ("code", code_version_text()),
    ]


# ---------------------------------------------------------------- profiling
def profile_step(runner: Runner, weights: dict, examples, step: int, top: int = 22) -> str:
    """cProfile one step: cumulative time of the project's own functions (where the step's time goes,
    by phase), then the functions anywhere with the most own time."""
    runner.reset(weights)
    gc.collect()
    prof = cProfile.Profile()
    prof.enable()
    m = runner.trainer.step(examples, step)
    prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (primitive calls, calls, own s, cumulative s, callers)
    root = str(REPO_ROOT) + os.sep

    def where(key) -> str:
        file, line, name = key
        return f"{file.removeprefix(root)}:{line}({name})" if file.startswith(root) else f"{Path(file).name}:{line}({name})"

    ours = sorted(((v[3], v[1], k) for k, v in stats.items()
                   if k[0].startswith(root) and f"{os.sep}.venv{os.sep}" not in k[0]), reverse=True)
    own = sorted(((v[2], v[1], k) for k, v in stats.items()), reverse=True)
    lines = [f"== {runner.case.name}: step {m['time/step_s']:.3f}s (rollout+scoring {m['time/rollout_s']:.3f}s, "
             f"update {m['time/update_s']:.3f}s) under cProfile",
             "   cumulative s   calls  project function"]
    lines += [f"   {t:12.3f} {n:7d}  {where(k)}" for t, n, k in ours[:top]]
    lines += ["   own s          calls  function (anywhere)"]
    lines += [f"   {t:12.3f} {n:7d}  {where(k)}" for t, n, k in own[:12]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main
def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.variant_overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"measured steps per variant, after 1 warm-up round (default {STEPS}; {QUICK_STEPS} with --quick)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_STEPS} measured rounds instead of {STEPS} (what `python -m benchmarks` runs): "
                        "about half the time, wider intervals")
    p.add_argument("--prompts", type=int, default=None,
                   help="prompts per rollout batch (default: the config's rollout.prompts_per_step, 64); a multiple of 4")
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


def select(all_cases: list[Case], names: set[str]) -> list[Case]:
    """``names`` and their baselines, in the table's order."""
    known = {c.name for c in all_cases}
    unknown = sorted(names - known)
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}: choose from {sorted(known)}")
    names = names | {c.baseline for c in all_cases if c.name in names and c.baseline}
    return [c for c in all_cases if c.name in names]


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
    runners = [build_runner(c, cfg, init_dir, task) for c, cfg in zip(chosen, cfgs)]
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
    facts = {
        "rollout batch": f"{prompts} prompts × {n} responses = {prompts * n} (max {base.rollout.max_new_tokens} new tokens)",
        "warm start": str(init_dir),
        "rounds": f"{WARMUP} warm-up + {args.steps} measured; {len(runners)} trainers, one step each per round, in a random order",
        "same rollouts in every variant at each step": "yes" if all(len(v) == 1 for v in rollouts_seen.values()) else "NO",
        "CPU time / wall time of the steps": f"{sum(x['cpu/step_s'] for x in rows) / sum(x['time/step_s'] for x in rows):.3f}",
        "load average (1 min)": f"{load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end",
        "run time": f"{measured_s:.0f}s" + (f" (+{time.perf_counter() - t_start - measured_s:.0f}s profiling)" if profiles else ""),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    report = render(argv, args.threads, facts, summarize(runners))
    print()
    print(report)
    for text in profiles:
        print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + "\n")
    print(f"[bench] wrote {args.out}")
    if args.json:
        raw = {"facts": facts, "overrides": {r.case.name: list(r.case.overrides) for r in runners},
               "rounds": {r.case.name: r.rows for r in runners}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
        print(f"[bench] wrote {args.json}")
    print(f"[bench] total {time.perf_counter() - t_start:.0f}s")
    return 0


def render(argv: Optional[list[str]], threads: int, facts: dict[str, str], results: list[Result]) -> str:
    cmd = " ".join(["python -m benchmarks.variant_overhead", *(sys.argv[1:] if argv is None else argv)])
    overrides = [f"- `{r.case.name}`: `{' '.join(r.case.overrides)}`" for r in results]
    return "\n".join([
        "# Variant overhead vs the GRPO baseline",
        "",
        f"`{cmd}`",
        "",
        *[f"- {k}: {v}" for k, v in environment(threads) + list(facts.items())],
        "",
        table(results),
        "",
        "Seconds per step, medians over the measured rounds. `rollout+scoring` is `time/rollout_s` (sampling,",
        "rewards, the π_old forward with NTHR's scores, advantages, reward-balanced buffering); `update` is",
        "`time/update_s` (the mini-batch updates, and diagnostics when on). `× baseline`: median over rounds of",
        "variant / baseline in the same round, [90% bootstrap interval]. A result is marked *within noise* when",
        "that interval crosses the goal. `grpo_again` is an identical copy of `grpo`: its ratios show the noise floor.",
        "",
        "Overrides of each variant (composed with `sweeps.compose.compose`):",
        "",
        *overrides,
    ])


if __name__ == "__main__":
    sys.exit(main())
