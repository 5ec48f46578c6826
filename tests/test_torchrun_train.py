"""`grpolab train` under torchrun: 2 DeepSpeed ZeRO-2 ranks (gloo, CPU) make one run record.

- With ``rollout.shard_over_ranks=false`` every rank samples what one process samples, so the
  2-rank run must follow the 1-process run (``grpolab train`` without torchrun, same engine): same
  rewards, losses and grad norms within 1e-5 (float32 sums in another order).
- With sampling sharded (the default) the run completes, and still only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.run_record import read_jsonl

pytest.importorskip("deepspeed", reason="several ranks need the deepspeed extra")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
KEYS = ("train/loss", "train/pg_loss", "train/grad_norm", "train/entropy")


def _overrides(root: Path) -> list[str]:
    """The default tiny model with a short warm start: groups are mixed from the first step."""
    return [f"paths.output_root={root}/out", f"paths.cache_dir={root}/cache",
            "task.n_train=64", "task.n_eval=16", "sft.steps=150",
            f"train.steps={STEPS}", "train.eval_every=2", "rollout.prompts_per_step=4", "rollout.n=4",
            "rollout.eval_n=2", "batching.mini_batch_size=8", "batching.micro_batch_size=4",
            "engine=deepspeed_zero2"]


def _train(root: Path, run: str, ranks: int, *extra: str):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cli = ["-m", "sweeps.cli", "train", *_overrides(root), *extra, "--run-dir", str(root / run)]
    cmd = [sys.executable, *cli] if ranks == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", *cli]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out, root / run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    one = _train(root, "one", 1)  # builds the warm start the others reuse
    two = _train(root, "two", 2, "rollout.shard_over_ranks=false")
    sharded = _train(root, "sharded", 2)
    return {"one": one, "two": two, "sharded": sharded}


@pytest.mark.parametrize("name", ["two", "sharded"])
def test_one_record_written_by_rank_0_only(runs, name):
    out, run_dir = runs[name]
    assert out.stdout.count("run record:") == 1  # rank 1 prints nothing
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(STEPS + 1))  # each step once, not once per rank
    assert json.loads((run_dir / "meta.json").read_text())["world_size"] == 2
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert not list(run_dir.glob("error.rank*.json"))


def test_two_ranks_follow_the_one_process_run(runs):
    one = read_jsonl(runs["one"][1] / "metrics.jsonl")
    two = read_jsonl(runs["two"][1] / "metrics.jsonl")
    assert json.loads((runs["one"][1] / "meta.json").read_text())["world_size"] == 1
    assert any(r.get("train/mixed_group_frac", 0) > 0 for r in one)  # non-zero advantages: a real test
    for r1, r2 in zip(one[1:], two[1:]):
        assert r1["train/reward"] == r2["train/reward"]  # the same samples
        for k in KEYS:
            assert abs(r1[k] - r2[k]) <= 1e-5 * max(1.0, abs(r1[k])), (r1["step"], k, r1[k], r2[k])
    assert [r.get("eval/accuracy") for r in one] == [r.get("eval/accuracy") for r in two]


def test_sharded_sampling_draws_another_sample(runs):
    """Sharding changes which random draws each prompt gets (the streams are per rank)."""
    two = read_jsonl(runs["two"][1] / "metrics.jsonl")
    sharded = read_jsonl(runs["sharded"][1] / "metrics.jsonl")
    assert two[0]["eval/accuracy"] is not None
    differs = [k for k in ("train/response_length", "train/loss", "train/reward")
               if any(a.get(k) != b.get(k) for a, b in zip(two[1:], sharded[1:]))]
    assert differs
