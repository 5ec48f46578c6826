"""GRPO steps on a GPU with a Qwen2.5-0.5B-sized model built from its config (no download).

    python -m benchmarks.gpu_step                          # DeepSpeed ZeRO-2 bf16, HF generate rollouts
    python -m benchmarks.gpu_step engine=torch rollout.max_new_tokens=64

Runs the real trainer (``run_training``) for a few steps and reports, from the run record, the
rollout and update throughput (tokens/s), an MFU estimate, and the peak GPU memory. Extra
arguments are config overrides. The model has Qwen2.5-0.5B's body (896 wide, 24 layers, 14 heads,
2 KV heads, 4864 MLP) and the project's char tokenizer, so the LM head is small (about 100 rows
instead of 151,936): MFU counts the parameters actually present.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

QWEN2_5_0_5B_BODY = [
    "model.hidden_size=896", "model.intermediate_size=4864", "model.num_layers=24",
    "model.num_heads=14", "model.num_kv_heads=2", "model.max_position_embeddings=1024",
]
DEFAULTS = [
    *QWEN2_5_0_5B_BODY,
    "sft.enabled=false", "engine=deepspeed_zero2", "engine.device=cuda",
    "rollout.prompts_per_step=64", "rollout.n=8", "rollout.max_new_tokens=256",
    "batching.mini_batch_size=256", "batching.micro_batch_size=64",
    "train.steps=4", "train.eval_every=1000", "train.eval_prompts=8", "rollout.eval_n=1",
    "diagnostics.every=0", "optim.lr=1e-6",
]
H200_BF16_PEAK_TFLOPS = 989.0  # dense bf16, NVIDIA's datasheet figure for H100/H200 SXM


def main(argv: list[str]) -> int:
    report = measure(argv)
    print(json.dumps(report, indent=1))
    return 0 if report.get("status", "completed") == "completed" else 1


def measure(argv: list[str]) -> dict:
    """One short run with the defaults plus ``argv`` overrides: its figures, or its summary if it failed."""
    import torch

    from sweeps.compose import compose
    from trainer.run import run_training
    from trainer.run_record import RunRecord, RunStatus

    out = Path(tempfile.mkdtemp(prefix="gpu_step_"))
    cfg = compose([*DEFAULTS, f"paths.output_root={out}", f"paths.cache_dir={out}/cache", *argv])
    t0 = time.time()
    summary = run_training(cfg, out / "run")
    wall = time.time() - t0
    rows = [r for r in RunRecord(out / "run").metrics() if r["step"] >= 1]
    if summary.status is not RunStatus.completed or not rows:
        return {"status": "failed", "summary": summary.to_json()}
    n_params = _param_count(out / "cache")
    steady = rows[1:] or rows  # the first step pays compilation / allocator warm-up

    def med(key: str) -> float:
        return sorted(r[key] for r in steady)[len(steady) // 2]

    tokens_per_step = med("perf/rollout_tokens_per_s") * med("time/rollout_s")
    seq_tokens = tokens_per_step  # completion tokens; prompts are a few tokens here
    # update: forward + backward = 6·N·tokens per epoch; π_old forward in rollout: 2·N·tokens
    upd_flops = 6 * n_params * seq_tokens * cfg.algorithm.ppo_epochs
    report = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "engine": f"{cfg.engine.backend.value} zero{cfg.engine.zero_stage} {cfg.engine.precision.value}",
        "params": n_params,
        "steps": len(rows),
        "completion_tokens_per_step": round(tokens_per_step),
        "step_s_median": round(med("time/step_s"), 3),
        "rollout_s_median": round(med("time/rollout_s"), 3),
        "update_s_median": round(med("time/update_s"), 3),
        "rollout_tokens_per_s": round(med("perf/rollout_tokens_per_s")),
        "update_tokens_per_s": round(med("perf/update_tokens_per_s")),
        "update_mfu_pct": round(100 * upd_flops / med("time/update_s") / (H200_BF16_PEAK_TFLOPS * 1e12), 2),
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
        "wall_s": round(wall, 1),
    }
    for key in ("async/staleness", "async/trainer_wait_s", "async/sampler_idle_frac"):
        if key in steady[0]:
            report[key] = round(med(key), 3)
    return report


def _param_count(cache: Path) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_file = next(cache.rglob("config.json"))
    with __import__("torch").device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(cfg_file.parent))
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
