"""Real runs and sweeps on the tiny model (slow: seconds to a minute each)."""

import json
import subprocess
import sys

import pytest

from sweeps.compose import compose
from tests.conftest import fast_overrides
from trainer.run import run_training
from trainer.run_record import read_jsonl

pytestmark = pytest.mark.slow

TIMING = ("time/", "perf/")


def _deterministic(rows):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


def test_run_completes_with_full_record(tmp_path):
    cfg = compose(fast_overrides(tmp_path, steps=4))
    summary = run_training(cfg, tmp_path / "run", log=lambda *a: None)
    assert summary.status == "completed", summary
    for name in ("config.yaml", "meta.json", "metrics.jsonl", "summary.json"):
        assert (tmp_path / "run" / name).is_file()
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    for key in ("train/reward", "train/loss", "train/entropy", "train/clip_frac_low", "train/clip_frac_high",
                "train/response_length", "perf/rollout_tokens_per_s", "perf/update_tokens_per_s"):
        assert key in rows[1], key
    assert "eval/accuracy" in rows[0] and "eval/accuracy" in rows[2] and "eval/accuracy" in rows[4]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["seed"] == cfg.seed and len(meta["config_hash"]) == 12
    assert summary.wall_time_s > 0 and summary.steps_completed == 4


def test_same_seed_gives_identical_metrics(tmp_path):
    cfg = compose(fast_overrides(tmp_path, steps=3) + ["algorithm.kl.coef=0.05"])
    run_training(cfg, tmp_path / "a", log=lambda *a: None)
    run_training(cfg, tmp_path / "b", log=lambda *a: None)
    a, b = (read_jsonl(tmp_path / d / "metrics.jsonl") for d in ("a", "b"))
    assert _deterministic(a) == _deterministic(b)
    other = compose(fast_overrides(tmp_path, steps=3) + ["algorithm.kl.coef=0.05", "seed=1"])
    run_training(other, tmp_path / "c", log=lambda *a: None)
    assert _deterministic(read_jsonl(tmp_path / "c" / "metrics.jsonl")) != _deterministic(a)


def test_warm_start_success_rate_strictly_between_0_and_1(tmp_path):
    cfg = compose(fast_overrides(tmp_path, steps=1) + ["model.hidden_size=64", "model.intermediate_size=128",
                                                       "sft.steps=300", "task.n_eval=32", "rollout.eval_n=4"])
    summary = run_training(cfg, tmp_path / "run", log=lambda *a: None)
    assert 0.0 < summary.warmstart_eval_accuracy < 1.0
    assert summary.warnings is None


def test_a_warm_start_at_zero_accuracy_is_reported_loudly_and_recorded(tmp_path):
    """The fast config's 30-step warm start answers nothing right: GRPO can learn nothing from it."""
    cfg = compose(fast_overrides(tmp_path, steps=1))
    lines = []
    summary = run_training(cfg, tmp_path / "run", log=lines.append)
    assert summary.warmstart_eval_accuracy == 0.0
    assert any("WARNING: warm start eval accuracy 0.000" in line for line in lines), lines
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["warnings"] == summary.warnings and "sft.steps" in summary.warnings[0]


def test_non_finite_loss_fails_the_run_with_step_and_cause(tmp_path, monkeypatch):
    # Fault injection standing in for a buggy user reward function that returns NaN.
    from trainer.tasks.arithmetic import ArithmeticTask

    monkeypatch.setattr(ArithmeticTask, "reward", lambda self, completion, example: float("nan"))
    cfg = compose([o for o in fast_overrides(tmp_path, steps=3) if not o.startswith("sft.")] + ["sft.steps=0"])
    summary = run_training(cfg, tmp_path / "run", log=lambda *a: None)
    assert summary.status == "failed"
    assert summary.error["step"] == 1
    assert "non-finite" in summary.error["cause"]
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["status"] == "failed" and saved["error"]["step"] == 1


def _grpolab(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_sweep_runs_every_cell_prints_table_and_skips_completed_on_rerun(tmp_path):
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = ["sweep", *fast_overrides(tmp_path, steps=2), "sweep.id=t", "algorithm.kl.coef=0,0.1", "seed=0,1"]
    first = _grpolab(*args, cwd=root)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 to run" in first.stdout
    table = (tmp_path / "out" / "sweeps" / "t" / "table.md").read_text()
    assert "algorithm.kl.coef" in table
    rows = [line for line in table.splitlines() if line.startswith("| 0")]
    assert len(rows) == 2 and all(line.rstrip().endswith("| 2 |") for line in rows)  # 2 cells × n=2 seeds
    status = _grpolab("status", "t", "--root", str(tmp_path / "out"), cwd=root)  # a local sweep: records only
    assert status.returncode == 0, status.stderr[-3000:]
    assert status.stdout.splitlines()[0] == "sweep t: 4 cells: 4 completed; 8/8 steps (100%)"
    second = _grpolab(*args, cwd=root)
    assert second.returncode == 0 and "0 to run, 4 already completed" in second.stdout


def test_one_invalid_cell_launches_nothing(tmp_path):
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = _grpolab("sweep", *fast_overrides(tmp_path), "sweep.id=bad", "algorithm.clip.low=0.2,1.5", cwd=root)
    assert out.returncode == 2
    assert "cell 1" in out.stderr and "algorithm.clip.low=1.5" in out.stderr
    assert not (tmp_path / "out" / "sweeps" / "bad").exists()


PRESET_VARIANTS = {
    "lopti_paper": ["grpo", "ar", "lopti", "ar_lopti"],
    "nthr_paper": ["grpo", "nthr", "nthr_beta_0", "nthr_beta_0p1", "nthr_beta_neg_inf"],
    "cancellation_paper": ["cb_baseline", "qb", "rb", "qb_rb", "sign_segregated"],
    "dfpo_paper": ["gspo", "dfpo_min_replace", "dfpo_orth_proj", "dfpo_no_stop_grad", "grpo", "grpo_fix"],
}


@pytest.mark.parametrize("preset", sorted(PRESET_VARIANTS))
def test_paper_preset_runs_end_to_end_and_writes_its_table(tmp_path, preset):
    """Each paper's grid, shrunk to seconds (2 steps, one seed), runs every variant and tabulates it."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shrink = [*fast_overrides(tmp_path, steps=2), "sweep.seeds=[0]", "diagnostics.every=1"]
    if preset == "cancellation_paper":  # a knob no cell of the others uses is refused (it would mean nothing)
        shrink.append("batching.reward_balanced.zero_adv_groups=count")
    out = _grpolab("sweep", f"experiment={preset}", *shrink, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    variants = PRESET_VARIANTS[preset]
    assert f"{len(variants)} to run" in out.stdout
    table = (tmp_path / "out" / "sweeps" / preset / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert sorted(r.split("|")[1].strip().split(" ")[0] for r in rows) == sorted(variants), table
    runs = tmp_path / "out" / "sweeps" / preset / "runs"
    metrics = [read_jsonl(d / "metrics.jsonl") for d in runs.iterdir()]
    updated = [r for m in metrics for r in m if r.get("train/updated") == 1.0]
    assert all("diag/flip_all_tokens" in r for r in updated)  # diagnostics on every update
    if preset != "nthr_paper":  # NTHR's dynamic sampling skips the update while every group is uniform
        assert updated


@pytest.mark.slow
def test_the_knights_and_knaves_preset_warm_starts_between_0_and_1_and_learns(tmp_path, kk_cache):
    """K&K, the Lopti paper's task, once trained on text with its spaces dropped: warm start at
    accuracy 0 and no reward signal. Now its warm start is strictly inside (0, 1) and GRPO updates."""
    cfg = compose(["experiment=lopti_kk", "variant=grpo", "train.steps=2", "train.eval_every=2",
                   "train.eval_prompts=64", f"paths.output_root={tmp_path}/out", f"paths.cache_dir={kk_cache}"])
    summary = run_training(cfg, tmp_path / "run", log=lambda *a: None)
    assert summary.status == "completed" and summary.warnings is None
    assert 0.0 < summary.warmstart_eval_accuracy < 1.0
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert all(r["train/mixed_group_frac"] > 0 and r["train/grad_norm"] > 0 for r in rows[1:])
