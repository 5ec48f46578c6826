"""Where a sweep's cells stand (sweeps/status.py): each cell's run record joined with its job's SLURM
state, for local and SLURM sweeps; and ``grpolab status`` / ``grpolab table`` never import torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.status import CellState, cell_state, format_status, read_jobs, sweep_status
from trainer.run_record import RunStatus, Summary

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("status,slurm,expected", [
    (RunStatus.completed, None, CellState.completed),
    (RunStatus.completed, "RUNNING", CellState.completed),
    (None, "PENDING", CellState.pending),
    (RunStatus.running, "RUNNING", CellState.running),
    (RunStatus.preempted, "PENDING", CellState.preempted),
    (RunStatus.preempted, "REQUEUED", CellState.preempted),
    (RunStatus.failed, "FAILED", CellState.failed),
    (RunStatus.failed, "COMPLETED", CellState.failed),
    (RunStatus.running, "CANCELLED", CellState.failed),  # killed mid-run without a checkpoint exit
    (None, "OUT_OF_MEMORY", CellState.failed),
    (RunStatus.preempted, "CANCELLED", CellState.preempted),
    (None, None, CellState.missing),
])
def test_cell_state_joins_the_run_record_and_slurm(status, slurm, expected):
    summary = Summary(status=status) if status else None
    assert cell_state(summary, slurm)[0] is expected


def _sweep(tmp_path, records: dict, jobs: dict | None = None) -> Path:
    """A sweep dir as ``grpolab sweep`` leaves it: the plan (4 steps per cell), the given run
    records ({name: summary dict}) and, for a SLURM sweep, jobs.json."""
    sweep = tmp_path / "demo"
    names = ["a_s0", "b_s0", "c_s0", "d_s0", "e_s0"]
    plan = {"sweep_id": "demo", "runs": [{"name": n, "swept": {"x": i}, "steps": 4} for i, n in enumerate(names)]}
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps(plan))
    for name, summary in records.items():
        (sweep / "runs" / name).mkdir(parents=True)
        (sweep / "runs" / name / "summary.json").write_text(json.dumps(summary))
    if jobs is not None:
        (sweep / "jobs.json").write_text(json.dumps(jobs))
    return sweep


RECORDS = {
    "a_s0": {"status": "completed", "steps_completed": 4},
    "b_s0": {"status": "failed", "steps_completed": 1, "error": {"step": 2, "cause": "OOM"}},
    "c_s0": {"status": "running", "steps_completed": 3},
    "d_s0": {"status": "preempted", "steps_completed": 2},
}  # e_s0 has no record


def test_a_local_sweep_is_read_from_its_records_alone(tmp_path):
    cells = sweep_status(_sweep(tmp_path, RECORDS))
    assert [(c.name, c.state, c.steps_done, c.ended) for c in cells] == [
        ("a_s0", CellState.completed, 4, True),
        ("b_s0", CellState.failed, 1, True),
        ("c_s0", CellState.running, 3, False),
        ("d_s0", CellState.preempted, 2, True),  # no job will resume it: the sweep must be re-run
        ("e_s0", CellState.pending, 0, False),  # nothing submitted yet
    ]
    assert cells[1].detail == "OOM" and "re-run the sweep" in cells[3].detail
    text = format_status("demo", cells).splitlines()
    # steps: 4 (completed counts whole) + 1 + 3 + 2 + 0 of 5 × 4
    assert text[0] == ("sweep demo: 5 cells: 1 completed, 1 failed, 1 pending, 1 preempted, 1 running; "
                       "10/20 steps (50%)")
    assert text[1].split() == ["completed", "a_s0", "4/4", "job", "-", "x=0"]


def test_a_slurm_sweep_whose_jobs_slurm_no_longer_knows(tmp_path):
    """jobs.json names jobs that neither squeue nor sacct report (ids no cluster has): a cell without
    a job is missing, and one whose job vanished is read from its record."""
    jobs = {"a_s0": ["990001_0"], "c_s0": ["990001_2"], "d_s0": ["990001_3"]}
    sweep = _sweep(tmp_path, RECORDS, jobs)
    assert read_jobs(sweep) == jobs
    states = {c.name: (c.state, c.job_id) for c in sweep_status(sweep)}
    assert states == {"a_s0": (CellState.completed, "990001_0"), "b_s0": (CellState.failed, None),
                      "c_s0": (CellState.running, "990001_2"), "d_s0": (CellState.preempted, "990001_3"),
                      "e_s0": (CellState.missing, None)}


def test_an_unreadable_jobs_file_is_no_jobs(tmp_path):
    sweep = _sweep(tmp_path, {})
    (sweep / "jobs.json").write_text('{"a_s0": ["1_')
    assert read_jobs(sweep) == {}
    assert {c.state for c in sweep_status(sweep)} == {CellState.pending}


# ---------------------------------------------------------------- light commands
HEAVY = ("torch", "transformers", "trainer.config")  # trainer.config: the schema, soon importing torch


def _imports_after(code: str) -> list[str]:
    """The HEAVY modules loaded once ``code`` ran in a fresh interpreter (it must not fail)."""
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_grpolab_status_and_table_import_neither_torch_nor_the_schema(tmp_path):
    from analysis.synthetic import write_synthetic_sweep

    sweep = write_synthetic_sweep(tmp_path / "syn", axes={"variant": ["grpo", "ar"]}, seeds=range(2), steps=2)
    status = f"from sweeps.cli import main\nassert main(['status', {str(sweep)!r}]) == 0"
    table = f"from sweeps.cli import main\nassert main(['table', {str(sweep)!r}]) == 0"
    assert _imports_after(status) == []
    assert _imports_after(table) == []
    # the probe sees what it looks for: the SLURM launcher needs the schema (and the schema, the variants' torch)
    assert "trainer.config" in _imports_after("import sweeps.launch_slurm")
