"""What a person sees: the phases, elapsed time and ETA of a local sweep and of `grpolab train`, the
commands that follow a sweep, where each cell's log is (logs.json), the W&B line, a wandb:// read
without an API key, and a closed pipe (`grpolab status | head`)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import fast_overrides

REPO = Path(__file__).resolve().parents[1]
ETA = re.compile(r"elapsed (\d+:)?\d+(\.\d)?s?, ETA (\d+:)?\d+(\.\d)?s?\b")  # a known ETA, not "ETA ?"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 2-cell local sweep run through the launcher with a captured console (not a terminal), then
    the same command again through `grpolab sweep`, which finds both cells completed and ends."""
    import contextlib

    from sweeps.cli import main
    from sweeps.launch_local import launch_local
    from sweeps.plan import make_plan
    from sweeps.plan_owner import claim

    tmp = tmp_path_factory.mktemp("console")
    overrides = [*fast_overrides(tmp, steps=6), "seed=0,1", "sweep.id=con", "launcher.max_parallel=2"]
    plan = make_plan(overrides)
    claim(plan, ["grpolab", "sweep", *overrides])
    buf = io.StringIO()
    result = launch_local(plan, Console(file=buf, force_terminal=False, width=400), poll_s=0.05, report_every_s=0)
    assert set(result.statuses.values()) == {"completed"}, buf.getvalue()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["sweep", *overrides]) == 0
    return {"console": buf.getvalue(), "stdout": out.getvalue(), "dir": tmp / "out" / "sweeps" / "con",
            "names": [r.name for r in plan.runs]}


def test_the_console_shows_each_running_cells_phases_and_an_eta(sweep):
    lines = sweep["console"].splitlines()
    phases = [line for line in lines if line.startswith("[phase] ")]
    for name in sweep["names"]:
        assert any(line.startswith(f"[phase] {name}  ") for line in phases), lines
    assert any("warm start" in line for line in phases), phases  # the shared SFT build, or its reuse
    assert any("training: step 1 took" in line for line in phases), phases
    progress = [line for line in lines if line.startswith("[progress] ")]
    assert any(ETA.search(line) for line in progress), progress
    counts = [line.split(", elapsed")[0] for line in progress]
    assert len(counts) == len(set(counts)), progress  # a line only when the counts changed


def test_a_sweep_ends_with_the_table_path_and_the_plot_and_report_commands(sweep):
    last = sweep["stdout"].strip().splitlines()[-1]
    where = str(sweep["dir"])
    assert f"{where}/table.md" in last and f"grpolab plot {where}" in last and f"grpolab report {where}" in last
    assert (sweep["dir"] / "table.md").is_file()


def test_every_run_maps_to_its_own_log_and_no_literal_job_id_dir_is_left(sweep):
    logs = json.loads((sweep["dir"] / "logs.json").read_text())
    planned = [r["name"] for r in json.loads((sweep["dir"] / "sweep.json").read_text())["runs"]]
    assert sorted(logs) == sorted(planned)
    for name in planned:
        (attempt,) = logs[name]
        out = sweep["dir"] / attempt["stdout"]
        assert out.is_file() and out.parent == sweep["dir"] / "logs" / name
        text = out.read_text()
        assert f"[{name}] " in text and not any(f"[{other}] " in text for other in planned if other != name)
        assert ETA.search(text), text  # the trainer's own step lines carry elapsed and ETA too
    assert {p.name for p in (sweep["dir"] / "logs").iterdir()} == set(planned)  # no logs/%j, no logs/<pid>


def test_status_names_the_log_of_a_failed_local_cell(sweep):
    from sweeps.status import format_status, sweep_status
    from trainer.run_record import RunRecord, RunStatus

    name = sweep["names"][0]
    record = RunRecord(sweep["dir"] / "runs" / name)
    summary = record.read_summary()
    original = summary.to_json()
    summary.status, summary.error = RunStatus.failed, {"step": 3, "cause": "RuntimeError: boom"}
    record.write_summary(summary)
    try:
        text = format_status("con", sweep_status(sweep["dir"]))
    finally:
        (sweep["dir"] / "runs" / name / "summary.json").write_text(json.dumps(original))
    line = next(line for line in text.splitlines() if name in line)
    attempt = json.loads((sweep["dir"] / "logs.json").read_text())[name][-1]
    shown = re.search(r"log (\S+)\)", line).group(1)
    assert Path(shown) in (sweep["dir"] / attempt["stderr"], sweep["dir"] / attempt["stdout"]), line


def test_train_prints_its_phases_and_the_offline_wandb_line(tmp_path, capsys, monkeypatch):
    import wandb

    from sweeps.cli import main
    from trainer.tracking import offline_run_files

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # no key from this machine's ~/.netrc either
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    wandb.teardown()  # a service an earlier test started holds another environment
    try:
        code = main(["train", *fast_overrides(tmp_path, steps=3), "tracker=wandb", "tracker.project=demo",
                     "--run-dir", str(run_dir)])
    finally:
        wandb.teardown()
    out = capsys.readouterr().out
    assert code == 0, out
    (sync_file,) = offline_run_files(run_dir)
    mine = [line for line in out.splitlines() if line.startswith(f"[{run_dir.name}] ")]
    wb = [line for line in mine if "W&B" in line]
    assert len(wb) == 1 and "W&B offline (tracker.mode=auto and no API key" in wb[0], mine
    assert wb[0].endswith(f"upload them with: wandb sync --project demo {sync_file.parent}"), wb[0]
    assert f"files in {sync_file.parent};" in wb[0]
    for phase in ("warm start: training SFT", "warm start built in", "model loaded in", "training: step 1 took"):
        assert any(phase in line for line in mine), (phase, mine)
    assert any(ETA.search(line) for line in mine if " step 3/3 " in line), mine


def test_a_wandb_sweep_says_it_is_offline_and_how_to_sync_before_it_runs(tmp_path, capsys, monkeypatch):
    from sweeps.cli import main

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert main(["sweep", "--dry-run", f"paths.output_root={tmp_path}", "sweep.id=wb", "tracker=wandb",
                 "seed=0,1"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "W&B" in line)
    runs = tmp_path / "sweeps" / "wb" / "runs"
    assert line == (f"sweep wb: W&B offline (tracker.mode=auto without tracker.project): files in "
                    f"{runs}/*/wandb/offline-run-*; upload them with: wandb sync --project grpolab "
                    f"{runs}/*/wandb/offline-run-*")


def _no_key_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), NETRC=str(home / ".netrc"), PYTHONPATH=str(REPO))
    return env


@pytest.mark.parametrize("command", ["table", "plot", "report"])
def test_wandb_analysis_without_an_api_key_is_one_plain_line(tmp_path, command):
    run = subprocess.run([sys.executable, "-m", "sweeps.cli", command, "wandb://someone/proj/sweep1"], cwd=tmp_path,
                         env=_no_key_env(tmp_path), capture_output=True, text=True, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert "wandb://someone/proj/sweep1" in lines[0] and "wandb login" in lines[0] and "WANDB_API_KEY" in lines[0]


@pytest.mark.parametrize("command", ["status", "table", "config"])
def test_a_reader_that_closes_early_ends_the_command_quietly(sweep, tmp_path, command):
    args = {"status": [str(sweep["dir"])], "table": [str(sweep["dir"])], "config": []}[command]
    proc = subprocess.Popen([sys.executable, "-m", "sweeps.cli", command, *args], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes its first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 128 + signal.SIGPIPE, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
