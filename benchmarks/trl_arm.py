"""TRL's ``GRPOTrainer`` alone, as one arm of ``benchmarks.async_rollout``.

The same settings as ``trl_compare`` (``benchmarks/trl_settings.py``), the same warm start and
prompts; TRL runs its own ``Trainer.train()`` loop for a warm-up GRPO step and ``steps`` measured
ones. A ``TrainerCallback`` stamps every GRPO-step boundary (every μ·B/mini optimizer steps), and a
wrapper on ``_generate_and_score_completions`` counts the completion tokens each step generated.
Throughput is the measured steps' completion tokens ÷ their wall time, as for grpolab's arms.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("ACCELERATE_USE_CPU", "true")
# trl warns on import that it was tested with older vLLM releases; TRL runs here without vLLM
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")

import torch  # noqa: E402

from benchmarks.trl_interleave import Clock, Tokens, build_trl  # noqa: E402
from benchmarks.trl_settings import Settings  # noqa: E402


def trl_available() -> str | None:
    """None when TRL imports, else the line saying how to install it."""
    try:
        import datasets  # noqa: F401
        import trl  # noqa: F401
    except ImportError as e:
        return (f"TRL is not importable ({e}): `.venv/bin/pip install -c constraints/cpu.txt -e \".[bench]\"` "
                "(`make bench` does it)")
    return None


def run_trl_arm(threads: int, cfg, init_dir: Path, task, steps: int) -> dict:
    """TRL at ``threads`` torch threads: completion tokens/s and mean phase times of ``steps`` steps."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    s = Settings.of(cfg)
    examples = task.train[: len(task.train) // s.prompts * s.prompts]
    torch.set_num_threads(threads)
    rollout, tokens, stamps, per_step = Clock(), Tokens(), [], []

    class Boundary(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % s.optimizer_steps == 0:
                stamps.append(time.perf_counter())
                per_step.append((tokens.take()[0], rollout.take()[0]))

    with tempfile.TemporaryDirectory(prefix="trl_arm_") as out_dir:
        trainer = build_trl(s, init_dir, task, examples, out_dir, (steps + 1) * s.optimizer_steps, cfg.seed)
        torch.set_num_threads(threads)  # building TRL's trainer can reset it

        def count(out):
            tokens.completion += float(out["completion_mask"].sum())

        rollout.wrap(trainer, "_generate_and_score_completions", count)
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(Boundary())
        trainer.train()
    if len(stamps) != steps + 1:
        raise RuntimeError(f"TRL ran {len(stamps)} GRPO steps, expected {steps + 1}")
    measured = per_step[1:]
    wall = stamps[-1] - stamps[0]
    rollout_s = sum(r for _, r in measured) / steps
    return {"tokens_per_s": sum(t for t, _ in measured) / wall, "step_s": wall / steps,
            "rollout_s": rollout_s, "update_s": wall / steps - rollout_s, "wait_s": 0.0, "sampler_idle": 0.0}
