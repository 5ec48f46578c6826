"""INT, TERM, USR2 and HUP stop a run at a step boundary, never mid-step (docs/run-record.md, "Faults"):
``grpolab train`` checkpoints and records ``preempted``, and a re-run continues from the next step;
a signal to ``grpolab sweep`` (local launcher) reaches its running cell, which does the same, and
no traceback and no orphaned training is left. Real processes, the tiny model: slow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import fast_overrides
from trainer import checkpoint
from trainer.run_record import read_jsonl

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
STEPS = 30
SWEEP_STEPS = 200  # ~25 ms a step: the sweep relays the signal to its cell, so the cell must outlast the relay


def _grpolab(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sweeps.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")]


def _wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while max(_steps(run_dir), default=-1) < step:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run did not reach the step in time"
        time.sleep(0.05)


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _overrides(tmp_path, steps: int = STEPS) -> list[str]:
    return [*fast_overrides(tmp_path, steps=steps), "train.eval_every=10"]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGUSR2", "SIGHUP"])
def test_a_signal_to_grpolab_train_checkpoints_and_a_re_run_continues(tmp_path, sig):
    run = tmp_path / "run"
    train = ["train", "--run-dir", str(run), *_overrides(tmp_path)]
    proc = _grpolab(*train)
    _wait_for_step(run, 3, proc)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, sig), err[-2000:]
    stopped = _summary(run)
    k = stopped["steps_completed"]
    assert stopped["status"] == "preempted" and 3 <= k < STEPS
    assert checkpoint.peek(run).step == k and _steps(run) == list(range(k + 1))
    assert "Traceback" not in err and f"continue with: grpolab train --run-dir {run}" in out

    again = _grpolab(*train)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert f"resumed from the checkpoint at step {k} (attempt 2)" in out
    progress = [int(line.split()[2].split("/")[0]) for line in out.splitlines() if line.startswith("[run] step ")]
    assert progress[0] == (k // 10 + 1) * 10  # printed from where it resumed: the first eval step after k
    resumed = _summary(run)
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == k
    assert _steps(run) == list(range(STEPS + 1))  # strictly increasing, none lost, none repeated


@pytest.mark.parametrize("how", ["TERM to the sweep process", "Ctrl-C to its process group"])
def test_stopping_a_local_sweep_stops_its_cell_at_a_step_boundary(tmp_path, how):
    sweep_args = ["sweep", "sweep.id=sig", *_overrides(tmp_path, SWEEP_STEPS)]
    proc = _grpolab(*sweep_args)
    runs = tmp_path / "out" / "sweeps" / "sig" / "runs"
    deadline = time.time() + 300
    while not list(runs.glob("*/metrics.jsonl")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    (run,) = runs.iterdir()
    _wait_for_step(run, 3, proc)
    if how.startswith("TERM"):
        proc.send_signal(signal.SIGTERM)
        expected_rc = 128 + signal.SIGTERM
    else:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: every process of the group
        expected_rc = 128 + signal.SIGINT
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == expected_rc, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "stopped by SIG" in err and "Resume with: grpolab sweep sweep.id=sig" in err
    stopped = _summary(run)
    k = stopped["steps_completed"]
    assert stopped["status"] == "preempted" and checkpoint.peek(run).step == k < SWEEP_STEPS
    assert k < 3 + 20, k  # the stop reached the cell within ~0.5 s (20 steps), not at the sweep's next 1 s poll
    assert not Path(f"/proc/{stopped['pid']}").exists()  # the cell's process ended with the sweep: no orphan

    again = _grpolab(*sweep_args)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert _summary(run)["resumed_from_step"] == k and _steps(run) == list(range(SWEEP_STEPS + 1))
