"""Synthetic run records in the trainer's format, for tests and the table benchmark.

    python -m analysis.synthetic OUT_DIR [--seeds 50] [--steps 20]

writes a sweep of ``variant ∈ {grpo, ar, lopti, ar_lopti}`` × ``algorithm.kl.coef ∈ {0, 0.001,
0.01, 0.05, 0.1}`` × seeds (50 seeds → 1,000 runs), each with config.yaml, meta.json,
metrics.jsonl (eval, train and diag/* keys, docs/run-record.md) and summary.json, plus the
plan ``sweep.json``. Accuracy rises with the cell's index so tables and plots have a signal.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
from pathlib import Path

import yaml

from trainer.run_record import IDENTITY_VERSION, Meta, RunRecord, RunStatus, Summary, SweepPaths

DEFAULT_AXES = {"variant": ["grpo", "ar", "lopti", "ar_lopti"],
                "algorithm.kl.coef": [0.0, 0.001, 0.01, 0.05, 0.1]}
PROB_BINS = [0.25, 0.5, 0.75]
BIN_STATS = ("token_frac", "abs_adv", "grad_proxy", "dprob", "pos_right_frac", "neg_right_frac")


def _nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _history(rng: random.Random, skill: float, steps: int, eval_every: int, eval_n: int, diag: bool):
    acc0 = 0.3
    lines = [{"step": 0, "eval/accuracy": acc0, f"eval/pass@{eval_n}": min(1.0, acc0 * 2)}]
    for step in range(1, steps + 1):
        prog = step / steps
        acc = acc0 + skill * prog + rng.gauss(0, 0.02)
        rec = {"step": step, "train/reward": acc + rng.gauss(0, 0.02), "train/accuracy": acc,
               "train/response_length": 200 + 50 * prog + rng.gauss(0, 5), "train/kl": 0.01 * prog,
               "train/asym": rng.uniform(0.4, 0.6), "time/step_s": rng.uniform(1, 2)}
        if diag:
            rec["diag/lld_mean"] = -0.05 + 0.1 * skill + rng.gauss(0, 0.01)
            rec["diag/lld_lazy_frac"] = max(0.0, 0.4 - skill + rng.gauss(0, 0.02))
            for k in range(len(PROB_BINS) + 1):
                rec[f"diag/bin{k}_tokens"] = float(rng.randint(10, 100))
                for name in BIN_STATS:
                    rec[f"diag/bin{k}_{name}"] = rng.uniform(0, 1) * (k + 1) / (len(PROB_BINS) + 1)
        if step % eval_every == 0 or step == steps:
            rec["eval/accuracy"] = acc + rng.gauss(0, 0.01)
            rec[f"eval/pass@{eval_n}"] = min(1.0, 1.5 * rec["eval/accuracy"])
        lines.append(rec)
    return lines


def write_synthetic_sweep(root, axes: dict | None = None, seeds=range(3), steps: int = 10,
                          eval_every: int = 5, eval_n: int = 4, diag: bool = True, metrics: bool = True,
                          sweep_id: str = "synthetic", rng_seed: int = 0) -> Path:
    """Write a full sweep under ``root`` (created) and return it. Runs are planned in
    ``itertools.product(*axes.values(), seeds)`` order, as ``grpolab sweep`` expands a grid. The
    records are ``trainer.run_record``'s ``Meta`` and ``Summary``, written without fsync (speed)."""
    root = Path(root)
    paths = SweepPaths(root)
    axes = dict(DEFAULT_AXES if axes is None else axes)
    rng = random.Random(rng_seed)
    plan_runs = []
    combos = list(itertools.product(*axes.values()))
    for ci, combo in enumerate(combos):
        swept = dict(zip(axes, combo))
        cell_hash = hashlib.sha1(json.dumps(swept, sort_keys=True).encode()).hexdigest()[:12]
        skill = 0.05 + 0.3 * ci / max(1, len(combos) - 1)
        for seed in seeds:
            name = f"{cell_hash}_s{seed}"
            record = RunRecord(paths.run(name))
            overrides = [f"{k}={v}" for k, v in swept.items()] + [f"seed={seed}"]
            plan_runs.append({"name": name, "overrides": overrides, "swept": {**swept, "seed": seed}})
            config = _nest({"train.steps": steps, "train.eval_every": eval_every, "rollout.eval_n": eval_n,
                            "diagnostics.prob_bins": PROB_BINS, **swept, "seed": seed})
            record.config_path.write_text(yaml.safe_dump(config))
            meta = Meta(run_id=name, config_hash=cell_hash, seed=seed, label=swept.get("variant", "grpo"),
                        hash_version=IDENTITY_VERSION,
                        sweep_id=sweep_id, cell_id=cell_hash, swept={**swept, "seed": seed}, overrides=overrides,
                        plan_index=len(plan_runs) - 1, code_version={"commit": "0" * 40, "dirty": False},
                        created="2026-01-01T00:00:00+00:00")
            record.meta_path.write_text(json.dumps(meta.to_json()))
            hist = _history(rng, skill, steps, eval_every, eval_n, diag)
            if metrics:
                record.metrics_path.write_text("".join(json.dumps(h) + "\n" for h in hist))
            evals = [h["eval/accuracy"] for h in hist if "eval/accuracy" in h]
            summary = Summary(status=RunStatus.completed, steps_completed=steps, wall_time_s=rng.uniform(100, 200),
                              warmstart_eval_accuracy=evals[0], final_eval_accuracy=evals[-1],
                              best_eval_accuracy=max(evals), final_reward=hist[-1]["train/reward"],
                              final_response_length=hist[-1]["train/response_length"])
            record.summary_path.write_text(json.dumps(summary.to_json()))
    paths.plan.write_text(json.dumps({
        "sweep_id": sweep_id, "command": ["grpolab", "sweep"], "swept_keys": [*axes, "seed"],
        "base_overrides": [], "code_version": {"commit": "0" * 40, "dirty": False}, "runs": plan_runs,
        "created": "2026-01-01T00:00:00+00:00"}))
    return root


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--seeds", type=int, default=50, help="seeds per cell (20 cells)")
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)
    write_synthetic_sweep(args.out, seeds=range(args.seeds), steps=args.steps)
    print(f"wrote {20 * args.seeds} runs under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
