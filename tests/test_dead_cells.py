"""A record says ``running`` only while its process lives (sweeps/status.py): a cell whose process is
gone is ``dead``, says what re-runs it, and ``collect`` stops waiting for it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from sweeps.cli import main
from sweeps.status import STALE_FLOOR_S, CellState, process_alive, sweep_status
from trainer.run_record import Summary

COMMAND = ["grpolab", "sweep", "sweep.id=demo", "algorithm.kl.coef=0,0.05"]


def _finished_pid() -> int:
    """The pid of a process that has ended (and been reaped): no process has it now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _sweep(tmp_path, summary: dict, checkpoint_step: int | None = None):
    sweep = tmp_path / "demo"
    run = sweep / "runs" / "a_s0"
    run.mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps(
        {"sweep_id": "demo", "command": COMMAND, "runs": [{"name": "a_s0", "swept": {"x": 0}, "steps": 8}]}))
    (run / "summary.json").write_text(json.dumps({"status": "running", "steps_completed": 3, **summary}))
    if checkpoint_step is not None:
        step_dir = run / "checkpoint" / f"step_{checkpoint_step:06d}"
        step_dir.mkdir(parents=True)
        (step_dir / "trainer_state.pt").write_bytes(b"")
        (run / "checkpoint" / "latest").write_text(step_dir.name)
    return sweep


HERE = socket.gethostname()


@pytest.mark.parametrize("checkpoint_step,then", [(None, "starts it again (no checkpoint)"),
                                                  (2, "resumes it from its checkpoint at step 2")])
def test_a_running_record_whose_process_is_gone_is_dead(tmp_path, checkpoint_step, then):
    pid = _finished_pid()
    sweep = _sweep(tmp_path, {"host": HERE, "pid": pid, "heartbeat": time.time()}, checkpoint_step)
    (cell,) = sweep_status(sweep)
    assert cell.state == CellState.dead and cell.ended
    assert cell.detail == (f"its process {pid} on {HERE} is gone after step 3; re-running "
                           f"`grpolab sweep sweep.id=demo algorithm.kl.coef=0,0.05` {then}")


def test_a_running_record_whose_process_lives_is_running(tmp_path):
    sweep = _sweep(tmp_path, {"host": HERE, "pid": os.getpid(), "heartbeat": time.time()})
    (cell,) = sweep_status(sweep)
    assert cell.state == CellState.running and not cell.ended


def test_a_reused_pid_is_not_the_run_s_process(tmp_path):
    """This test's process started after the record's last heartbeat: it cannot be the writer."""
    sweep = _sweep(tmp_path, {"host": HERE, "pid": os.getpid(), "heartbeat": 1_000_000.0})
    (cell,) = sweep_status(sweep)
    assert cell.state == CellState.dead and "another process's now" in cell.detail


@pytest.mark.parametrize("age_s,expected", [(60.0, CellState.running), (STALE_FLOOR_S + 60, CellState.dead)])
def test_another_host_s_record_is_dead_once_its_heartbeat_is_stale(tmp_path, age_s, expected):
    sweep = _sweep(tmp_path, {"host": "some-other-node", "pid": 12345, "heartbeat": time.time() - age_s,
                              "wall_time_s": 30.0})  # 10 s a step: the floor (900 s) bounds it
    (cell,) = sweep_status(sweep)
    assert cell.state == expected


def test_a_record_without_a_process_is_left_running(tmp_path):
    """Written before records named their process: there is no telling, so it is not called dead."""
    (cell,) = sweep_status(_sweep(tmp_path, {}))
    assert cell.state == CellState.running


def test_a_re_run_leaves_a_live_writer_alone():
    assert process_alive(Summary(status="running", host=HERE, pid=os.getpid(), heartbeat=time.time()))
    assert not process_alive(Summary(status="running", host=HERE, pid=_finished_pid(), heartbeat=time.time()))
    assert not process_alive(Summary(status="preempted", host=HERE, pid=os.getpid(), heartbeat=time.time()))


def test_collect_returns_when_no_cell_is_live(tmp_path, capsys):
    sweep = _sweep(tmp_path, {"host": HERE, "pid": _finished_pid(), "heartbeat": time.time()})
    t0 = time.time()
    assert main(["collect", str(sweep), "--poll", "0.1", "--timeout", "60"]) == 1  # not completed
    assert time.time() - t0 < 30
    out, err = capsys.readouterr()
    assert "dead" in out and "a_s0" in err
