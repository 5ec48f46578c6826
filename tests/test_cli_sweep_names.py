"""One way to name a sweep: status, collect, table, plot and report each take a sweep dir, a sweep
id under --root, or a tune study (a real one, run here by the tiny trainer), with one error text
when none of them is there."""

from __future__ import annotations

import json

import pytest

from tests.cli_helpers import grpolab, tree, write_sweeps

SWEEP_COMMANDS = ("status", "collect", "table", "plot", "report")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """<root>/sweeps/kl, lopti (grid sweeps) and <root>/tune/real (one trial of the real trainer)."""
    from sweeps.tune import run_study
    from sweeps.tune_launch import TrainerLaunch
    from tests.conftest import fast_overrides
    from trainer.run_record import tune_root

    base = tmp_path_factory.mktemp("names")
    write_sweeps(base / "outputs")
    study = tune_root(base / "outputs", "real")
    run_study(fast_overrides(base, steps=2), {"algorithm.clip.high": "float:0.2:0.3"}, n_trials=1, seeds=[0],
              storage=None, study_name="real", directions=["maximize"], workers=1,
              launch_fn=TrainerLaunch(str(study)), steps_per_seed=2, default_dir=study, pruner="none")
    return base / "outputs"


def _args(command: str) -> list[str]:
    return {"collect": ["--timeout", "60"], "table": ["--metrics", "final_eval_accuracy"],
            "plot": ["--metrics", "eval/accuracy"]}.get(command, [])


@pytest.mark.parametrize("command", SWEEP_COMMANDS)
@pytest.mark.parametrize("how", ["id", "dir"])
def test_each_command_names_a_grid_sweep_by_id_or_dir(command, how, root, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    named = ["kl", "--root", str(root)] if how == "id" else [str(root / "sweeps" / "kl")]
    out_args = {"plot": ["--out", str(tmp_path / "p")], "report": ["--out", str(tmp_path / "r.html")]}
    rc, out, err = grpolab(capsys, command, *named, *_args(command), *out_args.get(command, []))
    assert rc == 0, err
    plan = json.loads((root / "sweeps" / "kl" / "sweep.json").read_text())
    if command in ("status", "collect"):
        assert all(f"completed {r['name']}" in out for r in plan["runs"])
    if command == "table":
        assert "algorithm.kl.coef" in out.splitlines()[0] and len(out.splitlines()) >= 4


@pytest.mark.parametrize("command", SWEEP_COMMANDS)
def test_each_command_reads_a_tune_dir_by_study_name(command, root, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = sorted(d.name for d in (root / "tune" / "real" / "runs").iterdir())
    assert runs == ["t0000_s0"]  # what grpolab tune wrote: one trial, one seed
    out_args = {"plot": ["--out", str(tmp_path / "p")], "report": ["--out", str(tmp_path / "r.html")]}
    rc, out, err = grpolab(capsys, command, "real", "--root", str(root), *_args(command), *out_args.get(command, []))
    assert rc == 0, err
    if command in ("status", "collect"):
        line = next(li for li in out.splitlines() if "t0000_s0" in li)
        assert line.split()[:3] == ["completed", "t0000_s0", "2/2"]
        assert "algorithm.clip.high=" in line
    if command == "table":
        assert "algorithm.clip.high" in out.splitlines()[0]


@pytest.mark.parametrize("command", SWEEP_COMMANDS)
def test_dry_run_resolves_the_sweep_and_writes_nothing(command, root, capsys):
    before = tree(root)
    rc, out, err = grpolab(capsys, command, "--dry-run", "lopti", "--root", str(root))
    assert rc == 0, err
    assert out.startswith(f"dry run: grpolab {command} would read") and str(root / "sweeps" / "lopti") in out
    assert tree(root) == before


def test_a_sweep_that_is_nowhere_gets_the_same_error_from_every_command(capsys, tmp_path):
    errors = set()
    for command in SWEEP_COMMANDS:
        rc, out, err = grpolab(capsys, command, "nosuch", "--root", str(tmp_path))
        assert rc == 2 and "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1
        errors.add(lines[0].split(": ", 1)[1])  # after the command's "config error:" / "error:" prefix
    assert len(errors) == 1
    (error,) = errors
    for place in ("nosuch", f"{tmp_path}/sweeps/nosuch", f"{tmp_path}/tune/nosuch"):
        assert place in error


def test_status_of_a_directory_that_holds_no_sweep_says_so(capsys, tmp_path):
    rc, _, err = grpolab(capsys, "status", str(tmp_path))
    assert rc == 2 and "no sweep" in err and "Traceback" not in err
