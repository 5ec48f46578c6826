"""The SLURM launcher's pure parts (no cluster): what may reach sbatch, how a sweep is planned, and
what a job does past its requeue limit. How a cell's state is read: tests/test_sweep_status.py."""

import shlex
import subprocess

import pytest

from sweeps.compose import compose
from sweeps.launch_slurm import check_launcher, job_name
from trainer.config import LauncherConfig
from trainer.identity import run_meta
from trainer.knobs import ConfigError
from trainer.run_record import RunStatus


def test_slurm_profile_composes_with_its_cluster_options(tmp_path):
    cfg = compose([f"paths.output_root={tmp_path}", "launcher=slurm", "launcher.partition=gpu",
                   "launcher.account=proj", "+launcher.sbatch_extra.reservation=res1"])
    assert cfg.launcher.name.value == "slurm" and cfg.launcher.partition == "gpu"
    assert cfg.launcher.sbatch_extra == {"reservation": "res1"}


def test_launcher_keys_do_not_change_the_config_hash(tmp_path):
    from trainer.identity import config_hash

    base = [f"paths.output_root={tmp_path}"]
    assert config_hash(compose(base)) == config_hash(compose(base + ["launcher=slurm", "launcher.time_min=5"]))


@pytest.mark.parametrize("field,value,key", [
    ("sbatch_extra", {"reservation": "x\n#SBATCH --wrap=rm"}, "launcher.sbatch_extra.reservation"),
    ("sbatch_extra", {"x; rm -rf ~": "1"}, "launcher.sbatch_extra.x; rm -rf ~"),
    ("sbatch_extra", {"array": "0-3"}, "launcher.sbatch_extra.array"),
    ("env", {"BAD NAME": "1"}, "launcher.env.BAD NAME"),
    ("env", {"OK": "a\nb"}, "launcher.env.OK"),
    ("partition", "gpu\nrm -rf /", "launcher.partition"),
])
def test_values_that_could_escape_sbatch_are_refused_naming_the_key(field, value, key):
    with pytest.raises(ConfigError) as e:
        check_launcher(LauncherConfig(**{field: value}))
    assert key in str(e.value)


def test_quoted_values_pass_through_verbatim():
    """Spaces, quotes and $(...) in a value stay one literal sbatch argument."""
    check_launcher(LauncherConfig(sbatch_extra={"comment": "a b $(touch /tmp/pwned) 'q'"}, env={"X": "$(id)"}))
    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(command="true", folder="/tmp/f",
                               additional_parameters={"comment": "a b $(id) 'q'"},
                               setup=[f"export X={shlex.quote('$(id)')}"])
    line = next(ln for ln in text.splitlines() if ln.startswith("#SBATCH --comment="))
    assert shlex.split(line.split("=", 1)[1]) == ["a b $(id) 'q'"]
    out = subprocess.run(["bash", "-c", f"export X={shlex.quote('$(id)')}; printf %s \"$X\""],
                         capture_output=True, text=True)
    assert out.stdout == "$(id)"


def test_job_name_is_sanitized():
    assert job_name("my sweep;rm -rf /") == "grpolab-my_sweep_rm_-rf__"


def test_planned_cells_equal_hydras_own_compose_of_each_cell(tmp_path):
    """Planning composes once per set of config-group choices and applies value overrides per cell;
    every cell must equal a full Hydra compose of its overrides."""
    from sweeps.plan import make_plan

    plan = make_plan([f"paths.output_root={tmp_path}", "sweep.id=p", "variant=grpo,rb", "algorithm.kl.coef=0,0.1",
                      "seed=0,7"])
    assert [r.cfg.seed for r in plan.runs] == [0, 7] * 4
    assert [r.swept["variant"] for r in plan.runs] == ["grpo"] * 4 + ["rb"] * 4
    for run in plan.runs:
        assert run.cfg == compose(run.overrides), run.name
    assert plan.runs[0].cfg.algorithm is not plan.runs[1].cfg.algorithm  # no shared mutable sections


def test_a_bad_value_names_its_cell_and_key(tmp_path):
    from sweeps.plan import make_plan

    with pytest.raises(ConfigError, match=r"(?s)cell 1 \(algorithm.kl.coef=abc\).*algorithm.kl.coef"):
        make_plan([f"paths.output_root={tmp_path}", "sweep.id=p", "algorithm.kl.coef=0,abc", "seed=0"])


def test_an_invalid_seed_names_its_cell(tmp_path):
    from sweeps.plan import make_plan

    with pytest.raises(ConfigError, match=r"(?s)cell 1 \(seed=-1\).*seed=-1: must be >= 0"):
        make_plan([f"paths.output_root={tmp_path}", "sweep.id=p", "seed=0,-1"])


def test_a_dirty_tree_warns_or_is_refused(monkeypatch, capsys):
    import sweeps.launch_slurm as ls

    monkeypatch.setattr(ls, "code_version", lambda: {"commit": "abc", "dirty": True})
    assert ls.check_code_version(LauncherConfig())["dirty"] is True
    assert "uncommitted changes" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="launcher.refuse_dirty=true"):
        ls.check_code_version(LauncherConfig(refuse_dirty=True))


def test_a_job_requeued_more_than_max_requeues_fails_without_training(tmp_path, monkeypatch):
    import json

    from sweeps.job import CellJob

    cfg = compose([f"paths.output_root={tmp_path}", "launcher=slurm", "launcher.max_requeues=2"])
    monkeypatch.setenv("SLURM_RESTART_COUNT", "3")
    summary = CellJob(cfg, str(tmp_path / "run"), run_meta(cfg, tmp_path / "run"))()
    assert summary.status == RunStatus.failed and "launcher.max_requeues=2" in summary.error["cause"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_queued_job_survives_a_new_config_field():
    """Jobs pickle their config as a dict and rebuild it at start: a field added to the schema after
    submission takes its default instead of breaking the job (it did, with pickled dataclasses)."""
    import pickle

    from sweeps.compose import compose
    from sweeps.job import CellJob
    from trainer.identity import to_dict

    cfg = compose(["variant=nthr", "algorithm.nthr.beta=-inf"])
    job = CellJob(cfg, "/tmp/run", run_meta(cfg, "/tmp/r"))
    assert to_dict(pickle.loads(pickle.dumps(job)).cfg) == to_dict(cfg)
    state = job.__getstate__()
    del state["cfg"]["train"]["checkpoint_every"]  # as if pickled before that field existed
    old = CellJob.__new__(CellJob)
    old.__setstate__(state)
    assert old.cfg.train.checkpoint_every == 0 and old.cfg.algorithm.nthr.beta == float("-inf")


def _fake_slurm(tmp_path, monkeypatch):
    """sbatch/squeue/sacct stand-ins first on PATH (no cluster here): sbatch answers as SLURM does,
    with job ids 100, 101, ...; squeue prints ``squeue.txt``; sacct knows nothing."""
    import os
    import stat

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": f'n=$(cat {bin_dir}/n 2>/dev/null || echo 100); echo $((n + 1)) > {bin_dir}/n\n'
                  'echo "Submitted batch job $n"\n',
        "squeue": f"cat {bin_dir}/squeue.txt 2>/dev/null\n",
        "sacct": "true\n",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_submit_records_each_cells_job_and_a_rerun_skips_the_queued_one(tmp_path, monkeypatch):
    import json
    import pickle

    from sweeps.launch_slurm import submit_slurm
    from sweeps.plan import make_plan
    from sweeps.plan_owner import claim
    from sweeps.status import CellState, sweep_status
    from trainer.provenance import code_version

    bin_dir = _fake_slurm(tmp_path, monkeypatch)
    args = [f"paths.output_root={tmp_path}/out", "sweep.id=s", "launcher=slurm", "launcher.snapshot_code=false",
            "seed=0,1"]
    plan = make_plan(args)
    claim(plan, ["grpolab", "sweep", *args])  # as grpolab sweep does before submitting
    a, b = (r.name for r in plan.runs)
    report = submit_slurm(plan)
    assert report.submitted == {a: "100_0", b: "100_1"} and report.missing == [a, b]
    jobs_file = plan.sweep_dir / "jobs.json"
    assert json.loads(jobs_file.read_text()) == {a: ["100_0"], b: ["100_1"]}
    # each job runs its cell with the cell's labels and the code version taken at submit
    with open(plan.sweep_dir / "logs" / "100_1" / "100_1_submitted.pkl", "rb") as f:
        job = pickle.load(f).function
    assert (job.meta.run_id, job.meta.sweep_id, job.meta.plan_index, job.meta.seed) == (b, "s", 1, 1)
    assert job.meta.code_version == code_version() and job.run_dir.endswith(f"runs/{b}")

    (bin_dir / "squeue.txt").write_text("100_0|RUNNING\n")
    again = submit_slurm(make_plan(args))
    assert again.active == [a] and again.submitted == {b: "101"}  # submitit: one job is no array
    assert json.loads(jobs_file.read_text()) == {a: ["100_0"], b: ["100_1", "101"]}
    (bin_dir / "squeue.txt").write_text("100_0|RUNNING\n101|PENDING\n")
    assert [(c.state, c.job_id) for c in sweep_status(plan.sweep_dir)] == [
        (CellState.running, "100_0"), (CellState.pending, "101")]
