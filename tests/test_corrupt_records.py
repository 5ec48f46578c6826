"""Corrupt state never blocks or lies (docs/run-record.md, "Faults"): any bytes in a record file leave
``status``, ``table`` and ``sweep --dry-run`` working with one line naming the file; a corrupt line of
``metrics.jsonl`` is kept aside, never dropped; an unreadable checkpoint fails the run naming the file,
and the next attempt moves it aside and starts afresh; trainer state loads without arbitrary pickles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from analysis.synthetic import write_synthetic_sweep
from sweeps.cli import main
from sweeps.compose import compose
from sweeps.status import CellState, sweep_status
from tests.conftest import fast_overrides
from trainer import checkpoint
from trainer.record_check import RecordWarning
from trainer.run import run_training
from trainer.run_record import read_jsonl

QUIET = dict(log=lambda *a: None)
GARBAGE = {
    "bare string": b'"completed"',
    "a list": b'["completed"]',
    "not UTF-8": b'{"status": "completed\xff\xfe"}',
    "truncated JSON": b'{"status": "compl',
    "empty": b"",
    "wrong type": b'{"status": "completed", "steps_completed": "ten"}',
    "unknown status": b'{"status": "finished"}',
}


def _last_step(run_dir: Path) -> int:
    return max((r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")), default=-1)


@pytest.fixture
def sweep(tmp_path):
    """Four synthetic completed runs (two cells × two seeds) and their plan."""
    return write_synthetic_sweep(tmp_path / "syn", axes={"variant": ["grpo", "ar"]}, seeds=range(2), steps=4)


def _a_run(sweep: Path) -> Path:
    return sorted((sweep / "runs").iterdir())[0]


# ---------------------------------------------------------------- record files: status and table
@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_any_bytes_in_summary_json_leave_status_and_table_working(sweep, garbage, capsys):
    run = _a_run(sweep)
    (run / "summary.json").write_bytes(garbage)
    assert main(["status", str(sweep)]) == 0
    out, err = capsys.readouterr()
    line = next(line for line in out.splitlines() if run.name in line)
    assert line.split()[0] == CellState.failed.value and "summary.json" in line  # the cell names its damaged file
    assert "Traceback" not in err
    assert main(["table", str(sweep)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if garbage not in (GARBAGE["wrong type"], GARBAGE["unknown status"]):  # JSON objects: the table reads them
        assert f"warning: {run / 'summary.json'}" in err
    others = [c for c in sweep_status(sweep) if c.name != run.name]
    assert [c.state for c in others] == [CellState.completed] * 3  # one bad record hides no other run


@pytest.mark.parametrize("garbage", [GARBAGE["bare string"], GARBAGE["not UTF-8"], GARBAGE["truncated JSON"]],
                         ids=["bare string", "not UTF-8", "truncated JSON"])
def test_a_damaged_plan_still_lists_the_cells_from_their_run_dirs(sweep, garbage, capsys):
    (sweep / "sweep.json").write_bytes(garbage)
    with pytest.warns(RecordWarning, match="sweep.json"):
        cells = sweep_status(sweep)
    assert len(cells) == 4 and {c.state for c in cells} == {CellState.completed}
    assert main(["table", str(sweep)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_damaged_meta_json_is_reported_and_its_run_left_out_of_the_table(sweep, capsys):
    run = _a_run(sweep)
    (run / "meta.json").write_bytes(b"\x00\x01garbage")
    assert main(["table", str(sweep)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {run / 'meta.json'}: not UTF-8" in err or f"warning: {run / 'meta.json'}: not JSON" in err


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_sweep_dry_run_reads_past_damaged_records(tmp_path, garbage, capsys):
    from sweeps.plan import make_plan

    fast = [*fast_overrides(tmp_path), "sweep.id=dry"]
    plan = make_plan(fast)
    run_dir = plan.paths.run(plan.runs[0].name)
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_bytes(garbage)
    (run_dir / "meta.json").write_bytes(b'"meta"')
    assert main(["sweep", "--dry-run", *fast]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and f"warning: {run_dir / 'meta.json'}: a string, not a JSON object" in err
    assert f"warning: {run_dir / 'summary.json'}" in err
    assert "[pending]" in out  # an unreadable record is no completed run: the cell runs


# ---------------------------------------------------------------- metrics.jsonl
def test_read_jsonl_keeps_a_corrupt_middle_line_and_skips_only_a_torn_last_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 0}\n{"step": 1, "x": \xff}\n{"step": 2}\n{"step": 3, "x"')
    corrupt = []
    assert [r["step"] for r in read_jsonl(path, corrupt)] == [0, 2]
    assert [n for n, _ in corrupt] == [2]  # the torn last line is a killed writer's, not corruption
    with pytest.warns(RecordWarning, match="line 2 not a JSON object"):
        read_jsonl(path)


def test_a_corrupt_metrics_line_is_kept_aside_when_the_run_resumes(tmp_path):
    cfg = compose(fast_overrides(tmp_path, steps=5))
    run = tmp_path / "run"
    stopped = run_training(cfg, run, should_stop=lambda: _last_step(run) >= 3, **QUIET)
    assert stopped.status == "preempted" and stopped.steps_completed == 3
    lines = (run / "metrics.jsonl").read_text().splitlines()
    damaged = lines[2][:10] + "#garbled#"
    (run / "metrics.jsonl").write_text("\n".join([*lines[:2], damaged, *lines[3:]]) + "\n")
    resumed = run_training(cfg, run, **QUIET)
    assert resumed.status == "completed"
    aside = [json.loads(line) for line in (run / "metrics.corrupt.jsonl").read_text().splitlines()]
    assert aside == [{"line": 3, "text": damaged}]
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1, 3, 4, 5]
    assert any("step(s) [2] are missing" in w for w in resumed.warnings)


# ---------------------------------------------------------------- checkpoints
@pytest.mark.slow
@pytest.mark.parametrize("file", ["trainer_state.pt", "engine.pt"])
def test_an_unreadable_checkpoint_fails_naming_it_then_is_moved_aside(tmp_path, file):
    cfg = compose(fast_overrides(tmp_path, steps=4))
    run = tmp_path / "run"
    run_training(cfg, run, should_stop=lambda: _last_step(run) >= 2, **QUIET)
    damaged = checkpoint.latest(run) / file
    cut = damaged.read_bytes()[:100]
    damaged.write_bytes(cut)
    failed = run_training(cfg, run, **QUIET)
    assert failed.status == "failed" and failed.error["checkpoint"] == f"checkpoint/step_000002/{file}"
    assert file in failed.error["cause"]
    fresh = run_training(cfg, run, **QUIET)
    assert fresh.status == "completed" and fresh.resumed_from_step is None and fresh.attempt == 1
    aside = list(run.glob("checkpoint.corrupt-*"))
    assert len(aside) == 1 and (aside[0] / "step_000002" / file).read_bytes() == cut  # kept for inspection
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1, 2, 3, 4]


class _Planted:
    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_trainer_state_with_a_foreign_object_is_refused_not_unpickled(tmp_path):
    run = tmp_path / "run"
    step_dir = run / "checkpoint" / "step_000001"
    step_dir.mkdir(parents=True)
    planted = _Planted()
    planted.target = str(tmp_path / "executed")
    torch.save({"format": 1, "step": 1, "payload": planted}, step_dir / "trainer_state.pt")
    (run / "checkpoint" / "latest").write_text("step_000001")
    with pytest.raises(Exception, match="Unsupported global"):
        checkpoint.peek(run)
    assert not (tmp_path / "executed").exists()
