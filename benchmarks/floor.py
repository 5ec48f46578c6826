"""grpolab's update and rollout against the floor: the same work written as bare torch / HF calls.

    python -m benchmarks.floor [--quick] [--threads 1] [--steps 16] [--prompts 64] [--max-new-tokens 8]
                               [--mu 1] [--profile] [--out PATH] [--json PATH]

One process, the default tiny Qwen2 from the cached SFT warm start, the default GRPO config with
diagnostics off (``benchmarks.grpolab_setup.grpolab_config``, the same as ``trl_compare``'s: 64
prompts × 8, 2 mini-batches of 256, micro-batches of 128, μ = 1). Each round samples one rollout batch with grpolab
(``GRPOTrainer.collect``, not timed) and then times, in a fresh random order, each of:

- ``grpolab update``: ``GRPOTrainer.update`` on that batch (the whole ``time/update_s`` phase with
  diagnostics off: μ passes over the mini-batches, each accumulated over micro-batches, the clipped
  token-mean loss with its statistics, grad-norm clipping and AdamW);
- ``floor: fwd+bwd``: the same micro-batches (same rows, grouped by length and cut to the columns
  some row uses, as grpolab's forward does: ``update_plan.micro_batches``, ``logprobs.content_span``)
  through ``model(input_ids, attention_mask, position_ids).logits``, log-softmax, gather of the
  sampled tokens and ``-(logp·A·mask).sum() / n`` backward; gradients zeroed per mini-batch, no
  optimizer step;
- ``floor: fwd+bwd+AdamW``: the same plus, per mini-batch, ``clip_grad_norm_`` and ``AdamW.step``
  with grpolab's settings (the minimal complete update: the goal is judged against this one);
- ``grpolab rollout``: ``HFRollout.generate`` on the round's prompts (sampling only: chat-template
  check, tokenizing, ``model.generate``, masks, decoding);
- ``bare generate``: ``model.generate`` on the same prompts, tokenized and padded beforehand
  (outside the timing), with the same sampling settings and seed: it draws the same samples.

Before every timed call the model gets the round's weights back and the optimizers a fresh state,
so every call does the same work from the same state. Ratios are per round (grpolab ÷ floor), the
median over rounds with a 90% bootstrap interval. Goal: grpolab's update ≤ 1.3 × the floor.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import gc
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny model is local; any hub access is a bug
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers.utils import logging as transformers_logging

from benchmarks.grpolab_setup import build_trainer, grpolab_config
from benchmarks.machine import date_fact, load_fact, torch_environment
from benchmarks.profiling import framework_text
from benchmarks.report import bullets, command_line, markdown_table, write_json, write_text
from benchmarks.stats import Ratio, verdict
from sweeps.compose import compose
from trainer import update_plan
from trainer.logprobs import content_span, position_ids_for
from trainer.provenance import REPO_ROOT
from trainer.rollout.hf import format_prompt
from trainer.run import PromptStream
from trainer.scored_batch import ScoredBatch
from trainer.seeds import mix, sampling_seed
from trainer.sft import warm_start_dir
from trainer.tasks import build_task

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "floor.md"
GOAL = 1.3  # grpolab update ≤ GOAL × the bare fwd+bwd+AdamW floor
QUICK_STEPS = 4
CASES = ("grpolab update", "floor: fwd+bwd", "floor: fwd+bwd+AdamW", "grpolab rollout", "bare generate")


class Bench:
    """A grpolab trainer plus the bare-torch versions of its update and its sampling."""

    def __init__(self, cfg, init_dir: Path, task):
        self.cfg = cfg
        self.trainer = build_trainer(cfg, init_dir, task)
        self.policy, self.tok, self.engine = self.trainer.policy, self.trainer.tok, self.trainer.engine
        self.weights = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        self.fresh_optimizer = copy.deepcopy(self.engine.optimizer.state_dict())
        o = cfg.optim
        self.bare_opt = torch.optim.AdamW([p for p in self.policy.parameters() if p.requires_grad], lr=o.lr,
                                          betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
        self.bare_fresh = copy.deepcopy(self.bare_opt.state_dict())

    def reset(self) -> None:
        """The round's starting weights and fresh optimizer states: every timed call does the same work."""
        self.policy.load_state_dict(self.weights)
        self.engine.optimizer.load_state_dict(copy.deepcopy(self.fresh_optimizer))
        self.bare_opt.load_state_dict(copy.deepcopy(self.bare_fresh))
        self.policy.zero_grad(set_to_none=True)

    def sample_batch(self, examples, step: int) -> ScoredBatch:
        torch.manual_seed(sampling_seed(self.cfg.seed, step))
        return self.trainer.collect(examples, step).scored

    # ------------------------------------------------------------ the update, grpolab's and the floor
    def grpolab_update(self, sb: ScoredBatch, step: int) -> None:
        self.trainer.update(sb, step, torch.Generator().manual_seed(mix(self.cfg.seed, step, 2)))
        self.trainer.rollout.sync_weights(self.policy)

    def floor_update(self, sb: ScoredBatch, step: int, optimizer_step: bool) -> None:
        """grpolab's micro-batches (same rows, length-sorted micro-batches, same trimmed shapes) through the
        plainest policy-gradient loss; per mini-batch, gradients zeroed (and, with ``optimizer_step``, clipped
        and stepped)."""
        b, clip = sb.rollout, self.cfg.optim.grad_clip
        p = b.prompt_len
        lengths = update_plan.row_lengths(b.attention_mask, p)
        params = [q for q in self.policy.parameters() if q.requires_grad]
        minibatches = self.trainer._minibatches(sb, torch.Generator().manual_seed(mix(self.cfg.seed, step, 2)))
        self.policy.train()
        for _ in range(self.cfg.algorithm.ppo_epochs):
            for mb in minibatches:
                n = sb.loss_mask[mb].sum().clamp(min=1)
                for idx, _ in update_plan.micro_batches(self.cfg, mb, 0, 1, lengths):
                    lo, hi = content_span(b.attention_mask[idx], p)  # the columns grpolab's forward keeps
                    ids, am, q = b.input_ids[idx][:, lo:hi], b.attention_mask[idx][:, lo:hi], p - lo
                    logits = self.policy(input_ids=ids, attention_mask=am, position_ids=position_ids_for(am)).logits
                    logp = logits[:, q - 1 : -1].log_softmax(-1).gather(-1, ids[:, q:, None]).squeeze(-1)
                    t = logp.shape[1]
                    (-(logp * sb.advantages[idx][:, :t] * sb.loss_mask[idx][:, :t]).sum() / n).backward()
                if optimizer_step:
                    torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
                    self.bare_opt.step()
                self.bare_opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------ sampling, grpolab's and bare
    def encode(self, prompts: list[str]) -> dict:
        """What ``HFRollout.generate`` feeds ``model.generate``: G copies of each prompt, left-padded."""
        n = self.cfg.rollout.n
        texts = [format_prompt(self.tok, q) for q in prompts for _ in range(n)]
        return dict(self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False))

    def grpolab_rollout(self, prompts: list[str], step: int) -> torch.Tensor:
        torch.manual_seed(sampling_seed(self.cfg.seed, step))
        return self.trainer.rollout.generate(prompts, self.trainer.sampling).input_ids

    @torch.no_grad()
    def bare_generate(self, enc: dict, step: int) -> torch.Tensor:
        r = self.cfg.rollout
        torch.manual_seed(sampling_seed(self.cfg.seed, step))
        self.policy.eval()
        out = self.policy.generate(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=r.max_new_tokens,
            do_sample=True, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
            pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id,
        )
        self.policy.train()
        return out


def same_samples(a: torch.Tensor, b: torch.Tensor, pad: int) -> bool:
    """Equal up to right padding (grpolab pads the completions it stacks)."""
    w = max(a.shape[1], b.shape[1])
    a = torch.nn.functional.pad(a, (0, w - a.shape[1]), value=pad)
    b = torch.nn.functional.pad(b, (0, w - b.shape[1]), value=pad)
    return a.shape == b.shape and bool((a == b).all())


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ---------------------------------------------------------------- report
def table(rows: list[dict[str, float]], tokens: list[float], mu: int) -> tuple[str, dict[str, Ratio]]:
    med = {c: statistics.median(r[c] for r in rows) for c in CASES}
    pairs = {  # case -> what it is measured against
        "grpolab update": "floor: fwd+bwd+AdamW",
        "floor: fwd+bwd+AdamW": "floor: fwd+bwd",
        "grpolab rollout": "bare generate",
    }
    ratios = {c: Ratio.of([r[c] / r[base] for r in rows]) for c, base in pairs.items()}
    vs_fwd_bwd = Ratio.of([r["grpolab update"] / r["floor: fwd+bwd"] for r in rows])
    tok = statistics.median(tokens)
    lines = []
    for c in CASES:
        work = tok * (mu if c in CASES[:3] else 1)
        x, base = (ratios[c].text(), pairs[c]) if c in ratios else ("—", "")
        lines.append([c, f"{med[c]:.3f}", f"{work / med[c]:,.0f}", x, base])
    lines.append(["grpolab update vs fwd+bwd alone", "", "", vs_fwd_bwd.text(), "floor: fwd+bwd"])
    header = ["phase", "s (median)", "completion tokens/s", "× its floor [90% CI]", "floor"]
    return markdown_table(header, "lrrrl", lines), ratios


# ---------------------------------------------------------------- main
def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} measured rounds (≈ 40 s); overrides --steps")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--steps", type=int, default=16, help="measured rounds, after 1 warm-up round (default 16)")
    p.add_argument("--prompts", type=int, default=None, help="prompts per step (default: the config's, 64)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="completion cap (default: the config's, 8)")
    p.add_argument("--mu", type=int, default=1, help="passes over each rollout batch (default 1)")
    p.add_argument("--minibatches", type=int, default=2, help="optimizer steps per pass (default 2)")
    p.add_argument("--micro", type=int, default=None, help="micro-batch size (default: the config's, 128)")
    p.add_argument("--profile", action="store_true",
                   help="after measuring, cProfile one grpolab update and one floor update (with AdamW)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="Markdown report (default benchmarks/results/floor.md)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every round's times here")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = QUICK_STEPS
    for name in ("threads", "steps", "mu", "minibatches"):
        if getattr(args, name) < 1:
            p.error(f"--{name}={getattr(args, name)}: must be >= 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    transformers_logging.disable_progress_bar()

    base = compose([])
    cfg = grpolab_config(args.prompts or base.rollout.prompts_per_step,
                         args.max_new_tokens or base.rollout.max_new_tokens, args.mu, args.minibatches, args.micro)
    task = build_task(cfg.task)
    bench = Bench(cfg, warm_start_dir(cfg, task), task)
    stream = PromptStream(task.train, cfg.rollout.prompts_per_step, cfg.seed)
    warmup = 1
    print(f"[bench] ready in {time.perf_counter() - t_start:.1f}s; {cfg.rollout.prompts_per_step} prompts × "
          f"{cfg.rollout.n}; {warmup} warm-up + {args.steps} measured rounds", flush=True)

    rows, tokens, padded, same = [], [], set(), []
    profiles = {}
    for rnd in range(warmup + args.steps + (1 if args.profile else 0)):
        step = rnd + 1
        examples = stream.at(step)
        prompts = [e.prompt for e in examples]
        enc = bench.encode(prompts)
        bench.reset()
        sb = bench.sample_batch(examples, step)
        calls = {
            "grpolab update": lambda: bench.grpolab_update(sb, step),
            "floor: fwd+bwd": lambda: bench.floor_update(sb, step, optimizer_step=False),
            "floor: fwd+bwd+AdamW": lambda: bench.floor_update(sb, step, optimizer_step=True),
            "grpolab rollout": lambda: bench.grpolab_rollout(prompts, step),
            "bare generate": lambda: bench.bare_generate(enc, step),
        }
        if rnd == warmup + args.steps:  # the extra profiling round
            for name in ("grpolab update", "floor: fwd+bwd+AdamW"):
                bench.reset()
                gc.collect()
                profiles[name] = cProfile.Profile()
                profiles[name].runcall(calls[name])
            break
        order = list(CASES)
        random.Random(rnd).shuffle(order)  # position effects become noise, not bias
        times, outs = {}, {}
        for name in order:
            bench.reset()
            times[name], outs[name] = timed(calls[name])
        if rnd >= warmup:
            rows.append(times)
            tokens.append(float(sb.loss_mask.sum()))
            padded.add(tuple(sb.rollout.input_ids.shape))
            same.append(same_samples(outs["grpolab rollout"], outs["bare generate"], bench.tok.pad_token_id))
        print(f"[bench] round {rnd + 1}/{warmup + args.steps}{' (warm-up)' if rnd < warmup else ''}: "
              + ", ".join(f"{k} {times[k]:.2f}s" for k in CASES), flush=True)

    text, ratios = table(rows, tokens, cfg.algorithm.ppo_epochs)
    settings = settings_lines(cfg, padded, same, args.threads)
    facts = [
        ("rounds", f"{warmup} warm-up + {args.steps} measured; the five calls in a fresh random order each round"),
        load_fact(load_start),
        ("run time", f"{time.perf_counter() - t_start:.0f}s"),
        date_fact(),
    ]
    report = render(argv, args.threads, settings, facts, text, ratios)
    print()
    print(report)
    for name, prof in profiles.items():
        print(framework_text(name, prof))
    write_text(args.out, report + "\n")
    if args.json:
        write_json(args.json, {"settings": settings, "rounds": rows, "tokens": tokens})
    return 0


def settings_lines(cfg, padded: set, same: list[bool], threads: int) -> list[str]:
    r, b, a, o = cfg.rollout, cfg.batching, cfg.algorithm, cfg.optim
    return [
        f"rollout batch: {r.prompts_per_step} prompts × G={r.n} = {r.prompts_per_step * r.n} completions, "
        f"max {r.max_new_tokens} new tokens; padded [rows, prompt+completion] shapes seen: {sorted(padded)}",
        f"update: μ={a.ppo_epochs}, mini-batch {b.mini_batch_size} ({r.prompts_per_step * r.n // b.mini_batch_size} "
        f"optimizer steps per pass), micro-batch {b.micro_batch_size}, batching.mode={b.mode}; loss "
        f"{a.loss}, {a.loss_agg.value}, kl.coef {a.kl.coef:g}",
        f"AdamW lr {o.lr:g}, betas ({o.beta1}, {o.beta2}), weight decay "
        f"{o.weight_decay:g}, grad-norm clip {o.grad_clip:g} (grpolab and the AdamW floor)",
        f"sampling: temperature {r.temperature:g}, top_p {r.top_p:g}, top_k {r.top_k}; grpolab's rollout and the bare "
        f"generate drew the same samples in {sum(same)}/{len(same)} rounds",
        "tokens/s: completion tokens (up to and including EOS) of the round's batch ÷ time (× μ for the updates)",
        f"threads: {threads}; diagnostics.every=0",
    ]


def render(argv: Optional[list[str]], threads: int, settings: list[str], facts: list[tuple[str, str]], table_text: str,
           ratios: dict[str, Ratio]) -> str:
    upd, gen = ratios["grpolab update"], ratios["grpolab rollout"]
    return "\n".join([
        "## grpolab against the bare-torch floor",
        "",
        f"`{command_line('python -m benchmarks.floor', argv)}`",
        "",
        f"grpolab's update = **{upd.text()}** × the bare fwd+bwd+AdamW floor "
        f"(goal ≤ {GOAL:g}×: {verdict(upd, GOAL)}); "
        f"its rollout (sampling only) = **{gen.text()}** × a bare `model.generate`.",
        "",
        table_text,
        "",
        "Seconds per call, medians over the measured rounds; `× its floor`: median over rounds of the call ÷ its "
        "floor",
        "in the same round, [90% bootstrap interval]. The floors run grpolab's own micro-batches (same rows, grouped",
        "by length, cut to the columns some row uses) through `model(...)`, log-softmax, gather and",
        "`-(logp·A·mask).sum()/n` backward;",
        "the AdamW floor adds `clip_grad_norm_` and `AdamW.step` per mini-batch. grpolab's update adds the "
        "clipped-ratio",
        "loss, the entropy, its statistics (ratio, clip fractions, Asym) and the update bookkeeping.",
        "",
        "Settings:",
        "",
        *[f"- {x}" for x in settings],
        "",
        "Environment:",
        "",
        *bullets(torch_environment(threads) + facts),
    ])


if __name__ == "__main__":
    sys.exit(main())
