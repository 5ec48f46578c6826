"""Checkpoint and resume: a run stopped and resumed ends exactly where an uninterrupted run ends."""

import json

import pytest

from sweeps.compose import compose
from tests.conftest import fast_overrides
from trainer import checkpoint
from trainer.run import run_training
from trainer.run_record import read_jsonl

TIMING = ("time/", "perf/")
QUIET = dict(log=lambda *a: None)


def _deterministic(rows):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


def _last_step(run_dir) -> int:
    return max((r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")), default=-1)


def _stop_after(run_dir, n_steps: int):
    """A should_stop hook that asks the run to stop once its record holds step ``n_steps``."""
    return lambda: _last_step(run_dir) >= n_steps


RESULT_KEYS = ("final_eval_accuracy", "best_eval_accuracy", "final_reward", "final_response_length",
               "warmstart_eval_accuracy", "steps_completed")


@pytest.mark.parametrize("extra", [[], ["variant=rb", "algorithm.kl.coef=0.05"]], ids=["grpo", "reward_balanced_kl"])
def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path, extra):
    cfg = compose(fast_overrides(tmp_path, steps=5) + extra)
    whole = run_training(cfg, tmp_path / "whole", **QUIET)
    stopped = run_training(cfg, tmp_path / "cut", should_stop=_stop_after(tmp_path / "cut", 2), **QUIET)
    assert stopped.status == "preempted" and stopped.steps_completed == 2
    assert checkpoint.peek(tmp_path / "cut").step == 2
    resumed = run_training(cfg, tmp_path / "cut", **QUIET)
    assert resumed.status == "completed" and resumed.attempt == 2 and resumed.resumed_from_step == 2
    a, b = (read_jsonl(tmp_path / d / "metrics.jsonl") for d in ("whole", "cut"))
    assert [r["step"] for r in b] == [0, 1, 2, 3, 4, 5]  # no duplicated or missing steps
    assert _deterministic(b) == _deterministic(a)
    assert {k: getattr(resumed, k) for k in RESULT_KEYS} == {k: getattr(whole, k) for k in RESULT_KEYS}
    assert checkpoint.latest(tmp_path / "cut") is None  # removed once the run completed


def test_periodic_checkpoint_bounds_the_loss_of_a_crash(tmp_path):
    """A crash (here an interrupt after step 3) resumes from the step-2 checkpoint, not from scratch."""
    cfg = compose(fast_overrides(tmp_path, steps=4) + ["train.checkpoint_every=2"])

    def crash_after_3():
        if _last_step(tmp_path / "run") == 3:
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "run", should_stop=crash_after_3, **QUIET)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "preempted" and summary["steps_completed"] == 3
    assert checkpoint.peek(tmp_path / "run").step == 2
    meta_before = (tmp_path / "run" / "meta.json").read_text()
    resumed = run_training(cfg, tmp_path / "run", **QUIET)
    assert resumed.status == "completed" and resumed.resumed_from_step == 2
    assert (tmp_path / "run" / "meta.json").read_text() == meta_before  # same run id, same record
    whole = run_training(cfg, tmp_path / "whole", **QUIET)
    assert _deterministic(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == _deterministic(
        read_jsonl(tmp_path / "whole" / "metrics.jsonl"))
    assert resumed.final_eval_accuracy == whole.final_eval_accuracy


def test_completed_run_is_not_run_again(tmp_path):
    cfg = compose(fast_overrides(tmp_path, steps=2))
    first = run_training(cfg, tmp_path / "run", **QUIET)
    again = run_training(cfg, tmp_path / "run", **QUIET)
    assert again == first


def test_fresh_start_replaces_a_failed_record(tmp_path):
    cfg = compose(fast_overrides(tmp_path, steps=2))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 0, "stale": 1}\n{"step": 1, "stale": 1}\n')
    summary = run_training(cfg, run, **QUIET)
    rows = read_jsonl(run / "metrics.jsonl")
    assert summary.status == "completed" and [r["step"] for r in rows] == [0, 1, 2]
    assert all("stale" not in r for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR2"])
def test_signalled_job_checkpoints_at_a_step_boundary_and_resumes(tmp_path, sig):
    """The job process (submitit LocalExecutor, as ``launcher=local`` runs it) turns the signal into a
    checkpoint after the current step; running the same job again finishes the run identically."""
    import os
    import signal
    import time

    import submitit

    from sweeps.job import CellJob

    cfg = compose(fast_overrides(tmp_path, steps=30) + ["train.eval_every=10"])
    run_dir = tmp_path / "run"
    executor = submitit.LocalExecutor(folder=str(tmp_path / "logs"))
    job = executor.submit(CellJob(cfg, str(run_dir)))
    deadline = time.time() + 300
    while max((r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")), default=-1) < 2:
        assert time.time() < deadline and not job.done(), job.stderr()
        time.sleep(0.1)
    # signal the job's own process (as SLURM does), not submitit's local controller above it
    controller = job._process.pid
    children = open(f"/proc/{controller}/task/{controller}/children").read().split()
    os.kill(int(children[0]) if children else controller, getattr(signal, sig))
    while not job.done():
        time.sleep(0.1)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "preempted", summary
    assert checkpoint.peek(run_dir).step == summary["steps_completed"] < 30
    resumed = executor.submit(CellJob(cfg, str(run_dir))).result()
    assert resumed.status == "completed" and resumed.attempt == 2
    whole = run_training(cfg, tmp_path / "whole", **QUIET)
    assert _deterministic(read_jsonl(run_dir / "metrics.jsonl")) == _deterministic(
        read_jsonl(tmp_path / "whole" / "metrics.jsonl"))
    assert resumed.final_eval_accuracy == whole.final_eval_accuracy
