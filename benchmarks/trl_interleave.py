"""The two trainers of ``trl_compare`` and the loop that alternates them.

TRL runs its own ``Trainer.train()`` loop; a ``TrainerCallback`` fires at every GRPO-step
boundary and runs one grpolab step there, so the two alternate. Timing hooks wrap TRL's methods
(``_generate_and_score_completions``, ``model.generate``) and grpolab's ``model.generate`` the same
way; token counts come from the batches each side's rollout returns.
"""

from __future__ import annotations

import cProfile
import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from benchmarks.grpolab_setup import build_trainer
from benchmarks.trl_settings import Settings, trl_args
from trainer.config import Config
from trainer.grpo import GRPOTrainer
from trainer.modeling import load_policy, load_tokenizer
from trainer.rollout.hf import format_prompt
from trainer.run import PromptStream


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
    trainer: GRPOTrainer
    stream: PromptStream
    sampling: Clock = field(default_factory=Clock)
    tokens: Tokens = field(default_factory=Tokens)
    step_index: int = 0

    @classmethod
    def build(cls, cfg: Config, init_dir: Path, task, examples) -> "Grpolab":
        """Assembled as ``trainer.run.run_training`` does."""
        g = cls(build_trainer(cfg, init_dir, task), PromptStream(examples, cfg.rollout.prompts_per_step, cfg.seed))
        g.sampling.wrap(g.trainer.policy, "generate")
        g.trainer.collect = g._counting(g.trainer.collect)
        return g

    def _counting(self, collect):
        """``collect`` that also counts the scored batch's completion and prompt tokens."""
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


def build_trl(s: Settings, init_dir: Path, task, examples, out_dir: str, max_steps: int, seed: int):
    from datasets import Dataset
    from trl import GRPOTrainer as TRLGRPOTrainer

    tok = load_tokenizer(init_dir)
    # the exact text grpolab samples from (no chat template on the char tokenizer: the prompt as is)
    data = Dataset.from_dict({"prompt": [format_prompt(tok, e.prompt) for e in examples],
                              "idx": list(range(len(examples)))})
    return TRLGRPOTrainer(
        model=load_policy(init_dir), reward_funcs=trl_reward(task, examples),
        args=trl_args(s, out_dir, max_steps, seed), train_dataset=data, processing_class=tok,
    )


# ---------------------------------------------------------------- the alternation
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
        trl = self._trl_step(trl_s)
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
                 f"({trl['completion_tokens']:.0f} completion tokens), grpolab {g['step_s']:.2f}s "
                 f"({g['completion_tokens']:.0f})")
        self.round += 1
        gc.collect()
        self._maybe_profile("trl")
        self.resume = time.perf_counter()

    def _trl_step(self, trl_s: float) -> dict[str, float]:
        """TRL's step that just ended, ``trl_s`` long: its phases, calls, tokens and mean reward."""
        rollout_s, gen_calls = self.rollout.take()
        sampling_s, sample_calls = self.sampling.take()
        completion, prompt = self.tokens.take()
        seen = self.trl.reward_funcs[0].seen
        reward = sum(seen) / max(len(seen), 1)
        seen.clear()
        return {"reward": reward, "step_s": trl_s, "rollout_s": rollout_s, "update_s": trl_s - rollout_s,
                "sampling_s": sampling_s, "generate_calls": sample_calls, "rollout_calls": gen_calls,
                "completion_tokens": completion, "prompt_tokens": prompt,
                "optimizer_steps": float(self.s.optimizer_steps)}

    def _maybe_profile(self, name: str) -> None:
        if self.round == self.profile_round:
            self.profiles[name] = cProfile.Profile()
            self.profiles[name].enable()


def callback(interleave: Interleave):
    from transformers import TrainerCallback

    class GRPOBoundary(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            interleave.start()

        def on_step_end(self, args, state, control, **kwargs):
            interleave.on_optimizer_step_end(state.global_step)

    return GRPOBoundary()
