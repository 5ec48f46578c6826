"""A new variant is one module and nothing else: a token transform written outside the repository,
named in GRPOLAB_VARIANTS, composes, validates, trains and is recorded, while no file of the
training loop mentions it (tests/test_structure.py checks that for the built-in ones)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import fast_overrides

ROOT = Path(__file__).resolve().parents[1]

# The newcomer's whole contribution: clip each token advantage to [-max_abs, max_abs].
PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass

    from trainer.knobs import knob
    from trainer.registry import Feature, TokenTransform, register_feature


    @dataclass
    class ClipAdvantageConfig:
        enabled: bool = knob(False, "Clip every token advantage to [-max_abs, max_abs].")
        max_abs: float = knob(1.0, "The bound.", gt=0.0)


    def _apply(adv, ctx, section):
        out = adv.clamp(-section.max_abs, section.max_abs)
        changed = ((out != adv) & ctx.mask.bool()).sum()
        return out, {"clip_advantage/clipped_frac": float(changed) / max(float(ctx.mask.sum()), 1.0)}


    register_feature(Feature("clip_advantage", ClipAdvantageConfig, TokenTransform(_apply, order=40),
                             "Clipped token advantages (a newcomer's example)."))
''')

PROBE = textwrap.dedent('''
    import json, sys
    import torch
    from sweeps.compose import compose
    from trainer.grpo import GRPOTrainer
    from trainer.engine import TorchEngine
    from trainer.modeling import load_policy, load_tokenizer
    from trainer.rollout import build_rollout
    from trainer.sft import warm_start_dir
    from trainer.tasks import build_task
    from tests.conftest import HashTask

    out = {}
    for label, extra in (("off", []), ("on", ["algorithm.clip_advantage.enabled=true",
                                               "algorithm.clip_advantage.max_abs=0.5"])):
        cfg = compose(json.loads(sys.argv[1]) + extra)
        init = warm_start_dir(cfg, build_task(cfg.task), log=lambda *a: None)
        policy, tok = load_policy(init), load_tokenizer(init)
        task = HashTask()  # mixed groups even from an untrained model: non-zero advantages
        trainer = GRPOTrainer(cfg, policy, None, tok, TorchEngine(policy, cfg.optim),
                              build_rollout("hf", policy, tok, torch.device("cpu")), task)
        torch.manual_seed(0)
        got = trainer.collect(task.train[: cfg.rollout.prompts_per_step], step=1)
        mask = got.scored.loss_mask.bool()
        out[label] = {"adv": got.scored.advantages[mask].tolist(), "stats": got.stats}
    print(json.dumps(out))
''')


@pytest.fixture
def plugin_env(tmp_path):
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "clip_advantage_variant.py").write_text(PLUGIN)
    return {**os.environ, "GRPOLAB_VARIANTS": "clip_advantage_variant",
            "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugin"), str(ROOT)])}


def _overrides(tmp_path):
    return fast_overrides(tmp_path, steps=2) + ["rollout.prompts_per_step=8", "batching.mini_batch_size=16",
                                                "batching.micro_batch_size=8"]


def test_the_new_transform_clips_exactly_the_advantages_beyond_its_bound(tmp_path, plugin_env):
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(_overrides(tmp_path))], env=plugin_env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    off, on = got["off"]["adv"], got["on"]["adv"]
    assert len(off) == len(on) and any(abs(a) > 0.5 for a in off), "the probe needs advantages beyond the bound"
    assert on == [max(-0.5, min(0.5, a)) for a in off]  # the same sample, each token clipped, nothing else
    beyond = sum(abs(a) > 0.5 for a in off) / len(off)
    assert got["on"]["stats"]["train/clip_advantage/clipped_frac"] == pytest.approx(beyond)
    assert "train/clip_advantage/clipped_frac" not in got["off"]["stats"]


@pytest.mark.slow
def test_the_new_transform_runs_through_grpolab_train(tmp_path, plugin_env):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "sweeps.cli", "train", "--run-dir", str(run_dir), *_overrides(tmp_path),
           "algorithm.clip_advantage.enabled=true", "algorithm.clip_advantage.max_abs=0.5"]
    out = subprocess.run(cmd, env=plugin_env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all("train/clip_advantage/clipped_frac" in r for r in rows[1:])
    config = (run_dir / "config.yaml").read_text()
    assert "clip_advantage:\n    enabled: true\n    max_abs: 0.5" in config


def test_without_the_plugin_its_keys_are_unknown(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sweeps.cli", "config", "algorithm.clip_advantage.enabled=true"],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "clip_advantage" in out.stderr
