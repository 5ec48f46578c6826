"""W&B tracking (trainer/tracking.py) with the real wandb client, offline: what lands in the offline
run files (read back from the .wandb transaction log), run ids across requeues, no secrets."""

from __future__ import annotations

import dataclasses

import pytest

from trainer.run_record import Meta, RunRecord, RunStatus, Summary, read_jsonl
from trainer.tracking import (
    NullTracker,
    WandbTracker,
    is_secret_key,
    make_tracker,
    offline_run_files,
    read_offline_run,
    read_wandb_records,
    replay,
    resolve_mode,
    wandb_run_id,
)

SECRET = "sk-do-not-log-0123456789"
META = Meta(run_id="3f2a9c1b7e4d_s1", config_hash="3f2a9c1b7e4d", seed=1, label="grpo", sweep_id="kl-demo",
            cell_id="3f2a9c1b7e4d", swept={"algorithm.kl.coef": 0.01, "algorithm.clip.high": 0.28},
            overrides=[f"launcher.env.HF_TOKEN={SECRET}"])
CONFIG = {
    "seed": 1,
    "algorithm": {"kl": {"coef": 0.01, "estimator": "k3"}, "clip": {"low": 0.2, "high": 0.28}},
    "rollout": {"n": 4, "max_new_tokens": 16},
    "task": {"jsonl": {"prompt_key": "question"}},
    "launcher": {"env": {"HF_TOKEN": SECRET, "HF_HOME": "/scratch/hf"}},
    "tracker": {"name": "wandb", "project": None, "entity": None, "mode": "offline", "tags": []},
}


def _row(step: int) -> dict:
    row = {"step": step, "eval/accuracy": 0.1 * step} if step % 2 == 0 else {"step": step}
    if step:
        row.update({"train/reward": 0.5 + step / 100, "train/kl": step / 1000, "train/clip_frac_high": None})
    return row


def _write_record(run_dir, steps) -> RunRecord:
    record = RunRecord(run_dir)
    for s in steps:
        record.append_metrics(_row(s))
    return record


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_the_wandb_config_redacts_what_the_record_redacts():
    """trainer.secrets decides (tests/test_secrets.py); the tracker applies it to what it sends."""
    from trainer.secrets import REDACTED, redact_config

    clean = redact_config(CONFIG)
    assert clean["launcher"]["env"] == {"HF_TOKEN": REDACTED, "HF_HOME": REDACTED}  # env values: the job's only
    assert clean["task"]["jsonl"]["prompt_key"] == "question"  # 'key' inside a word is not a secret
    assert clean["rollout"]["max_new_tokens"] == 16
    for k in ("WANDB_API_KEY", "password", "aws_secret_access_key", "hf_token", "Auth", "credentials"):
        assert is_secret_key(k), k
    for k in ("max_new_tokens", "prompt_key", "num_kv_heads", "tokenizer", "author"):
        assert not is_secret_key(k), k


def test_run_id_is_stable_per_sweep_and_cell_and_valid_for_wandb():
    assert wandb_run_id(META) == wandb_run_id(dataclasses.replace(META)) == "kl-demo-3f2a9c1b7e4d_s1"
    assert wandb_run_id(dataclasses.replace(META, sweep_id="other")) != wandb_run_id(META)
    long = wandb_run_id(dataclasses.replace(META, sweep_id="a/b:" + "x" * 100))
    assert len(long) <= 64 and all(c.isalnum() or c in "_.-" for c in long)
    assert long == wandb_run_id(dataclasses.replace(META, sweep_id="a/b:" + "x" * 100))


def test_mode_is_offline_unless_a_project_and_a_key_are_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert resolve_mode("auto", "grpolab") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto", None) == "offline"
    assert resolve_mode("auto", "grpolab") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("auto", "grpolab") == "offline"
    assert resolve_mode("online", None) == "online"
    with pytest.raises(ValueError, match="tracker.mode"):
        resolve_mode("sometimes", None)


def test_tracker_none_and_ranks_other_than_0_get_a_null_tracker(tmp_path, monkeypatch):
    assert isinstance(make_tracker({"tracker": {"name": "none"}}, tmp_path, META), NullTracker)
    monkeypatch.setenv("RANK", "1")
    assert isinstance(make_tracker(CONFIG, tmp_path, META), NullTracker)
    assert not (tmp_path / "wandb").exists()
    monkeypatch.delenv("RANK")
    with pytest.raises(ValueError, match="tracker.name"):
        make_tracker({"tracker": {"name": "mlflow"}}, tmp_path, META)


def test_offline_run_holds_nested_config_tags_group_and_every_metric_step_aligned(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # even a configured key never reaches the files
    run_dir = tmp_path / "runs" / META.run_id
    record = _write_record(run_dir, range(0, 5))
    tracker = make_tracker(CONFIG, run_dir, META)
    assert isinstance(tracker, WandbTracker) and tracker.mode == "offline"
    assert replay(run_dir, tracker) == 5
    tracker.finish(Summary(status=RunStatus.completed, steps_completed=4, final_eval_accuracy=0.4))

    [path] = offline_run_files(run_dir)
    run = read_offline_run(path)
    assert run["run_id"] == "kl-demo-3f2a9c1b7e4d_s1"
    assert run["group"] == "kl-demo" and run["job_type"] == "grpo"
    assert sorted(run["tags"]) == ["algorithm.clip.high=0.28", "algorithm.kl.coef=0.01"]
    cfg = run["config"]
    assert cfg["algorithm"]["kl"] == {"coef": 0.01, "estimator": "k3"}  # nested keys, not a bare β
    assert cfg["algorithm"]["clip"]["high"] == 0.28 and cfg["seed"] == 1
    assert cfg["run_meta"]["swept"] == META.swept and "overrides" not in cfg["run_meta"]
    assert cfg["launcher"]["env"] == {"HF_TOKEN": "<redacted>", "HF_HOME": "<redacted>"}
    history = {h["_step"]: h for h in run["history"]}
    assert sorted(history) == [0, 1, 2, 3, 4]
    for row in record.metrics():
        logged = {k: v for k, v in history[row["step"]].items() if k != "_step"}
        assert logged == {k: v for k, v in row.items() if k != "step" and v is not None}
    for f in run_dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert SECRET.encode() not in data and b"k" * 40 not in data, f


def test_requeued_run_resumes_the_same_id_without_logging_a_step_twice(tmp_path):
    run_dir = tmp_path / META.run_id
    # attempt 1 records and logs steps 0-3, then is preempted
    record = _write_record(run_dir, range(0, 4))
    first = WandbTracker(run_dir, CONFIG, META, system_stats=False)
    replay(run_dir, first)
    first.finish(Summary(status=RunStatus.preempted, steps_completed=3))
    # attempt 2 (the requeued job) resumes from its step-2 checkpoint: the record is cut back to
    # step 2 and steps 3-6 are recorded again; the tracker gets each step once in all
    rows = [r for r in record.metrics() if r["step"] <= 2]
    record.metrics_path.unlink()
    _write_record(run_dir, [r["step"] for r in rows] + [3, 4, 5, 6])
    second = WandbTracker(run_dir, CONFIG, META, system_stats=False)
    assert second.last_step == 3
    assert replay(run_dir, second) == 3
    second.log({"train/reward": 9.0}, 6)  # the live hook after replay: a duplicate step is dropped
    second.finish(Summary(status=RunStatus.completed, steps_completed=6))

    runs = [read_offline_run(p) for p in offline_run_files(run_dir)]
    assert len(runs) == 2 and {r["run_id"] for r in runs} == {wandb_run_id(META)}
    steps = [h["_step"] for r in runs for h in r["history"]]
    assert steps == [0, 1, 2, 3, 4, 5, 6]
    last = runs[1]["history"][-1]
    assert last["train/reward"] == pytest.approx(_row(6)["train/reward"])


@pytest.mark.parametrize("status,exit_code", [(RunStatus.completed, 0), (RunStatus.preempted, 0),
                                              (RunStatus.failed, 1), (RunStatus.pruned, 1)])
def test_finish_logs_the_summary_and_ends_the_run_as_its_status_says(tmp_path, status, exit_code):
    """A run that completed, or stopped to resume (preempted, marked preempting), exits 0; one that
    failed or was pruned exits 1. The summary's scalars land as ``summary/<key>``."""
    run_dir = tmp_path / META.run_id
    tracker = WandbTracker(run_dir, CONFIG, META, system_stats=False)
    tracker.finish(Summary(status=status, steps_completed=2, final_eval_accuracy=0.25,
                           error={"step": 2, "cause": "x"} if status != RunStatus.completed else None))
    [path] = offline_run_files(run_dir)
    records = list(read_wandb_records(path))
    kinds = [r.WhichOneof("record_type") for r in records]
    summary = {i.key: i.value_json for r in records if r.WhichOneof("record_type") == "summary"
               for i in r.summary.update}
    assert summary["summary/status"] == f'"{status.value}"'
    assert summary["summary/final_eval_accuracy"] == "0.25" and summary["summary/steps_completed"] == "2"
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [exit_code]
    assert ("preempting" in kinds) == (status == RunStatus.preempted)


@pytest.mark.slow
def test_small_real_sweep_feeds_wandb_offline(tmp_path):
    """Two cells of the real tiny trainer through the sweep planner; each run record feeds one
    offline W&B run (what the run.py hook does live)."""
    from sweeps.plan import make_plan
    from tests.conftest import fast_overrides
    from trainer.identity import run_meta, to_dict
    from trainer.run import run_training

    plan = make_plan([*fast_overrides(tmp_path, steps=2), "algorithm.kl.coef=0.0,0.05", "sweep.id=wb"])
    assert len(plan.runs) == 2
    for run in plan.runs:
        run_dir = plan.sweep_dir / "runs" / run.name
        meta = plan.meta_for(run)
        summary = run_training(run.cfg, run_dir, meta, log=lambda *a: None)
        config = to_dict(run.cfg)
        tracker = WandbTracker(run_dir, config, meta, system_stats=False)
        replay(run_dir, tracker)
        tracker.finish(summary)
        [path] = offline_run_files(run_dir)
        wb = read_offline_run(path)
        assert wb["group"] == "wb", [r.WhichOneof("record_type") for r in read_wandb_records(path)]
        assert wb["job_type"] == run_meta(run.cfg, run.name).label == "grpo"
        assert sorted(wb["tags"]) == sorted(f"{k}={v}" for k, v in run.swept.items())
        assert f"algorithm.kl.coef={run.cfg.algorithm.kl.coef}" in wb["tags"]
        assert wb["config"]["algorithm"]["kl"]["coef"] == run.cfg.algorithm.kl.coef
        record_rows = read_jsonl(run_dir / "metrics.jsonl")
        assert [h["_step"] for h in wb["history"]] == [r["step"] for r in record_rows] == [0, 1, 2]
        assert wb["history"][-1]["eval/accuracy"] == pytest.approx(record_rows[-1]["eval/accuracy"])


@pytest.mark.slow
def test_a_live_run_with_tracker_wandb_logs_every_record_step(tmp_path):
    """`tracker=wandb` wired into the trainer: the offline run holds the nested config and exactly
    the metrics of the run record, step for step."""
    from sweeps.compose import compose
    from tests.conftest import fast_overrides
    from trainer.identity import run_meta
    from trainer.run import run_training

    cfg = compose(fast_overrides(tmp_path, steps=3) + ["tracker=wandb", "tracker.mode=offline"])
    meta = run_meta(cfg, tmp_path / "run", sweep_id="live", swept={"seed": 0})
    summary = run_training(cfg, tmp_path / "run", meta, log=lambda *a: None)
    assert summary.status == "completed"
    (wb,) = offline_run_files(tmp_path / "run")
    run = read_offline_run(wb)
    assert run["group"] == "live" and run["config"]["algorithm"]["clip"]["low"] == 0.2
    record = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    by_step = {h["_step"]: h for h in run["history"]}
    assert sorted(by_step) == [r["step"] for r in record]
    for r in record:
        for k, v in r.items():
            if k != "step" and isinstance(v, float):
                assert by_step[r["step"]][k] == pytest.approx(v), k


def test_no_config_key_looks_like_a_secret_to_the_scrubber():
    """Records and W&B redact secret-looking keys; a knob named like one (a knob `token_…` once was)
    would silently lose its value in every record. Every leaf of the schema must survive the scrubber."""
    import trainer.variants  # noqa: F401  their sections are part of the schema
    from trainer.config import Config
    from trainer.identity import to_dict

    def leaves(d, prefix=""):
        for k, v in d.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]

    flagged = [key for key in leaves(to_dict(Config())) if any(is_secret_key(part) for part in key.split("."))]
    assert flagged == []
    assert is_secret_key("token_transform_order")  # the scrubber would have eaten that name
