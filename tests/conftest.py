"""Shared fixtures: a tiny on-disk model, fast configs for end-to-end tests, stand-in SLURM commands."""

from __future__ import annotations

import os
import stat

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # any hub access is a bug: fail instead of hanging
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def fast_overrides(tmp_path, steps: int = 3) -> list[str]:
    """A run that takes seconds: small model, few prompts, short SFT, everything under tmp_path."""
    return [
        f"paths.output_root={tmp_path}/out",
        f"paths.cache_dir={tmp_path}/cache",
        "model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=2",
        "task.n_train=64", "task.n_eval=16", "task.arithmetic.max_operand=9",
        "sft.steps=30", "sft.batch_size=32",
        f"train.steps={steps}", "train.eval_every=2",
        "rollout.prompts_per_step=4", "rollout.n=4", "rollout.eval_n=2",
        "batching.mini_batch_size=8", "batching.micro_batch_size=4",
    ]


@pytest.fixture
def stub_slurm(tmp_path, monkeypatch):
    """Stand-ins first on PATH (no cluster here): sbatch keeps the script it is given (``scripts/job.sh``)
    and answers as SLURM does (job 100); srun, run by that script, records its argv and environment
    (``srun/argv``, NUL-separated; ``srun/env``, ``env -0``). Returns (work dir, now the cwd; scripts;
    srun)."""
    bin_dir, scripts, record = tmp_path / "bin", tmp_path / "scripts", tmp_path / "srun"
    for d in (bin_dir, scripts, record):
        d.mkdir()
    stubs = {
        "sbatch": f'cp "$1" {scripts}/job.sh\necho "Submitted batch job 100"\n',
        "srun": f"printf '%s\\0' \"$@\" >> {record}/argv\nenv -0 > {record}/env\n",
        "squeue": "true\n",
        "sacct": "true\n",
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # relative paths, leading dashes included, land here
    return work, scripts, record


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny untrained Qwen2 (hidden 32, 2 layers) and its char tokenizer, built once per session."""
    from trainer.config import ModelConfig
    from trainer.modeling import build_tiny

    cfg = ModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
    return build_tiny(cfg, tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def kk_cache(tmp_path_factory):
    """One warm-start cache for the tests that train the full-size presets (the K&K SFT alone takes ~3 min
    on 2 cores): the first test builds each warm start, the others reuse it."""
    return tmp_path_factory.mktemp("preset-cache")


@pytest.fixture
def fast(tmp_path):
    return fast_overrides(tmp_path)


class HashTask:
    """A fixed reward function with mixed groups even from an untrained model: reward 1 when the
    completion's character codes sum to a multiple of 3. Lets trainer-level tests exercise
    non-zero advantages without a warm start."""

    name = "hash"
    format_reward = 0.0

    def __init__(self):
        from trainer.tasks import Example

        self.train = [Example(prompt=f"{a}+{b}=", answer="", solution="") for a in range(4) for b in range(2)]
        self.eval = self.train[:2]

    def reward(self, completion, example) -> float:
        return float(sum(map(ord, completion)) % 3 == 0)


def hash_trainer(model_dir, cfg):
    """A ``GRPOTrainer`` over a float64 policy from ``model_dir`` on ``HashTask`` (torch engine, HF
    rollouts, 1 thread): mixed groups without a warm start."""
    import torch

    from trainer.engine import TorchEngine
    from trainer.grpo import GRPOTrainer
    from trainer.modeling import load_policy, load_tokenizer
    from trainer.rollout import build_rollout

    torch.set_num_threads(1)
    policy = load_policy(model_dir, dtype=torch.float64)
    tok = load_tokenizer(model_dir)
    return GRPOTrainer(cfg, policy, None, tok, TorchEngine(policy, cfg.optim),
                       build_rollout("hf", policy, tok, torch.device("cpu")), HashTask())


def one_trainer_step(model_dir, cfg, prepare=None):
    """A float64 policy from ``model_dir`` takes one GRPO step on ``HashTask`` (torch engine, HF
    rollouts, 1 thread); returns its parameters afterwards, flattened, and the step's metrics.
    ``prepare(trainer)`` runs before the step (e.g. to patch a method)."""
    import torch

    from trainer.engine import TorchEngine
    from trainer.grpo import GRPOTrainer
    from trainer.modeling import load_policy, load_tokenizer
    from trainer.rollout import build_rollout

    torch.set_num_threads(1)
    policy = load_policy(model_dir, dtype=torch.float64)
    tok = load_tokenizer(model_dir)
    task = HashTask()
    trainer = GRPOTrainer(cfg, policy, None, tok, TorchEngine(policy, cfg.optim),
                          build_rollout("hf", policy, tok, torch.device("cpu")), task)
    if prepare is not None:
        prepare(trainer)
    metrics = trainer.step(task.train, step=1)
    return torch.cat([p.detach().flatten() for p in policy.parameters()]), metrics


@pytest.fixture(scope="module")
def restore_environ():
    """For modules that start vLLM in the test process: it sets process-wide variables
    (LOCAL_WORLD_SIZE, LD_PRELOAD, ...) that later tests' subprocesses and SLURM jobs would inherit."""
    import os

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
