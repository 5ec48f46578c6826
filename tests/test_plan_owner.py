"""A sweep dir belongs to its plan; one process writes a run dir; the table reads planned runs only."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from sweeps.cli import main
from sweeps.plan import make_plan
from sweeps.plan_owner import claim
from tests.conftest import fast_overrides
from trainer.knobs import ConfigError
from trainer.locks import RunBusy, run_is_locked, try_run_lock

REPO = Path(__file__).resolve().parents[1]


def _args(tmp_path, *extra):
    return [f"paths.output_root={tmp_path}/out", "sweep.id=own", *extra]


def _plan_json(tmp_path) -> dict:
    return json.loads((tmp_path / "out/sweeps/own/sweep.json").read_text())


def test_the_same_plan_or_part_of_it_resumes_and_is_kept_in_the_history(tmp_path):
    args = _args(tmp_path, "algorithm.kl.coef=0,0.05", "seed=0,1")
    first = claim(make_plan(args), ["grpolab", "sweep", *args])
    assert first.kind == "new" and len(first.plan["runs"]) == 4
    again = claim(make_plan(args), ["grpolab", "sweep", *args])
    part = claim(make_plan(_args(tmp_path, "algorithm.kl.coef=0.05", "seed=1")), ["part"])
    assert (again.kind, part.kind) == ("resume", "resume")
    written = _plan_json(tmp_path)
    assert [r["name"] for r in written["runs"]] == [r["name"] for r in first.plan["runs"]]  # the plan is unchanged
    assert [h["kind"] for h in written["history"]] == ["new", "resume", "resume"]


def test_another_plan_under_an_existing_id_is_refused_and_the_old_plan_kept(tmp_path):
    args = _args(tmp_path, "algorithm.kl.coef=0,0.05")
    claim(make_plan(args), ["grpolab", "sweep", *args])
    before = (tmp_path / "out/sweeps/own/sweep.json").read_bytes()
    with pytest.raises(ConfigError, match=r"sweep.id=own: .* belongs to another plan .*--append"):
        claim(make_plan(_args(tmp_path, "algorithm.kl.coef=0,0.05", "train.steps=12")), ["other"])
    assert (tmp_path / "out/sweeps/own/sweep.json").read_bytes() == before


def test_an_append_keeps_apart_cells_that_differ_only_in_a_fixed_value(tmp_path):
    old = _args(tmp_path, "algorithm.kl.coef=0,0.05", "train.steps=6")
    new = _args(tmp_path, "algorithm.kl.coef=0,0.05", "train.steps=12")
    claim(make_plan(old), ["old"])
    plan = make_plan(new)
    ownership = claim(plan, ["new"], append=True)
    written = _plan_json(tmp_path)
    assert ownership.kind == "append"
    assert [k for k in written["swept_keys"] if k != "seed"] == ["algorithm.kl.coef", "train.steps"]
    assert sorted((r["swept"]["algorithm.kl.coef"], r["swept"]["train.steps"]) for r in written["runs"]) == \
        [(0.0, 6), (0.0, 12), (0.05, 6), (0.05, 12)]
    assert {r.swept["train.steps"] for r in plan.runs} == {12}  # the cells launched now carry the new key
    assert [(h["kind"], h["command"], len(h["added"])) for h in written["history"]] == \
        [("new", ["old"], 2), ("append", ["new"], 2)]


def test_a_damaged_plan_is_rebuilt_only_when_the_command_covers_every_record(tmp_path):
    plan_file = tmp_path / "out/sweeps/own/sweep.json"
    plan_file.parent.mkdir(parents=True)
    for garbage in (b"\xff\xfe{", b'"completed"', b"{}", b""):
        plan_file.write_bytes(garbage)
        with pytest.warns(UserWarning, match="sweep.json: .*rebuilt from this command"):
            ownership = claim(make_plan(_args(tmp_path)), ["x"])
        assert ownership.kind == "new" and (plan_file.parent / "sweep.json.damaged").read_bytes() == garbage
    (tmp_path / "out/sweeps/own/runs/0123456789ab_s0").mkdir(parents=True)  # a record of no cell of the command
    plan_file.write_bytes(b"\xff")
    with pytest.raises(ConfigError, match="not cells of this command .*move the sweep dir aside") as e:
        claim(make_plan(_args(tmp_path)), ["x"])
    assert "\n" not in str(e.value) and plan_file.read_bytes() == b"\xff"


def test_the_cli_refuses_another_plan_even_in_a_dry_run(tmp_path, capsys):
    claim(make_plan(_args(tmp_path, "algorithm.kl.coef=0,0.05")), ["first"])
    assert main(["sweep", "--dry-run", *_args(tmp_path, "algorithm.clip.high=0.2,0.28")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: sweep.id=own:") and "--append" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert main(["sweep", "--dry-run", "--append", *_args(tmp_path, "algorithm.clip.high=0.2,0.28")]) == 0
    # clip.high=0.2 is the default: that cell is the plan's kl.coef=0 cell; one cell is new
    assert "would append to the sweep's plan (3 cells" in capsys.readouterr().out
    assert [h["command"] for h in _plan_json(tmp_path)["history"]] == [["first"]]  # a dry run writes nothing


def test_the_table_reads_planned_runs_and_reports_the_others(tmp_path):
    from analysis.records import load_records

    args = _args(tmp_path, "algorithm.kl.coef=0,0.05")
    plan = make_plan(args)
    claim(plan, ["x"])
    stray = tmp_path / "out/sweeps/own/runs/stray_s0"
    nested = tmp_path / "out/sweeps/own/elsewhere/runs/a_s0"
    for d in (stray, nested):
        d.mkdir(parents=True)
        (d / "meta.json").write_text(json.dumps({"run_id": d.name, "seed": 0, "swept": {"algorithm.kl.coef": 0.0}}))
        (d / "summary.json").write_text(json.dumps({"status": "completed", "final_eval_accuracy": 1.0}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_records(tmp_path / "out/sweeps/own")
    assert sorted(df["run_id"]) == sorted(r.name for r in plan.runs)  # planned, none of them run yet
    assert set(df["status"]) == {"missing"}
    assert [str(w.message) for w in caught if "not in its plan" in str(w.message)][0].count("_s0") == 2


def test_a_run_dir_has_one_writer_and_a_killed_holder_leaves_no_lock(tmp_path):
    run_dir = tmp_path / "run"
    lock = try_run_lock(run_dir)
    with pytest.raises(RunBusy):
        try_run_lock(run_dir)
    assert run_is_locked(run_dir)
    lock.release()
    assert not run_is_locked(run_dir)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from trainer.locks import try_run_lock; "
                               f"l = try_run_lock({str(run_dir)!r}); print('held', flush=True); time.sleep(60)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert run_is_locked(run_dir)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert not run_is_locked(run_dir)  # the kernel dropped it with the process


def test_training_a_held_run_dir_writes_nothing(tmp_path):
    from sweeps.compose import compose
    from trainer.run import run_training

    cfg = compose(fast_overrides(tmp_path, steps=1))
    run_dir = tmp_path / "run"
    lock = try_run_lock(run_dir)
    try:
        with pytest.raises(RunBusy):
            run_training(cfg, run_dir)
    finally:
        lock.release()
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]


@pytest.mark.slow
def test_two_invocations_of_one_sweep_at_once_give_each_cell_one_writer(tmp_path):
    args = [*fast_overrides(tmp_path, steps=4), "sweep.id=twice", "seed=0,1,2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", "sweeps.cli", "sweep", *args], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    sweep = tmp_path / "out/sweeps/twice"
    names = [r["name"] for r in json.loads((sweep / "sweep.json").read_text())["runs"]]
    logs = [p.read_text() for p in (sweep / "logs").rglob("*.out")]
    for name in names:
        lines = (sweep / "runs" / name / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(line)["step"] for line in lines]
        assert steps == [0, 1, 2, 3, 4], (name, steps)
        summary = json.loads((sweep / "runs" / name / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["attempt"] == 1
        writers = sum(f"[{name}] warm start eval accuracy" in log for log in logs)
        assert writers == 1, (name, writers)
    busy = sum(err.count("[busy]") for _, err in outs)
    assert busy >= 1, outs  # they did meet: one waited on the other's cell
    print(f"two invocations, {len(names)} cells, {busy} busy waits, {time.time() - started:.0f} s")
