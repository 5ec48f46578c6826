"""Sweeps on a real single-node SLURM cluster (slurm/start.sh): job arrays, detach, status,
collect, idempotent re-runs, preemption and resume.

The module starts the cluster if it is not up (and stops it afterwards); where it cannot start
(no packages, not root) every test here is skipped with the reason.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeps.compose import compose
from tests.conftest import fast_overrides
from trainer.run import run_training
from trainer.run_record import read_jsonl

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("time/", "perf/")


def _deterministic(rows):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


def _cluster_up(env) -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s.strip() in ("idle", "mix", "alloc") for s in out.stdout.split())


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The environment (SLURM_CONF) of a running cluster; started here if needed, stopped if started here."""
    # slurm/env.sh decides where the cluster lives (and moves it out of a repo its daemons can't reach)
    slurm_dir = Path(
        subprocess.run(
            ["bash", "-c", f"source {ROOT / 'slurm' / 'env.sh'}; echo $GRPOLAB_SLURM_DIR"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    env = {**os.environ, "GRPOLAB_SLURM_DIR": str(slurm_dir), "SLURM_CONF": str(slurm_dir / "etc" / "slurm.conf")}
    started = False
    if not _cluster_up(env):
        if os.geteuid() != 0:
            pytest.skip("SLURM test cluster not running and slurm/start.sh needs root")
        if not shutil.which("slurmctld"):
            pytest.skip(
                "SLURM packages missing: run slurm/install.sh (Debian: slurmctld slurmd munge slurmdbd mariadb-server)"
            )
        out = subprocess.run(
            ["bash", str(ROOT / "slurm" / "start.sh")], env=env, capture_output=True, text=True, timeout=300
        )
        if out.returncode != 0 or not _cluster_up(env):
            pytest.skip(f"SLURM test cluster could not start: {(out.stderr or out.stdout)[-800:]}")
        started = True
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    yield env
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
    if started:
        subprocess.run(["bash", str(ROOT / "slurm" / "stop.sh")], env=env, capture_output=True, timeout=120)


def grpolab(env, *args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "sweeps.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _ok(out):
    assert out.returncode == 0, f"rc={out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


GRID = ["algorithm.kl.coef=0,0.1", "algorithm.clip.high=0.2,0.28", "seed=0,1"]


@pytest.fixture(scope="module")
def finished_sweep(slurm, tmp_path_factory):
    """A 2×2×2 sweep submitted with --detach and collected."""
    tmp = tmp_path_factory.mktemp("slurm_sweep")
    args = ["sweep", *fast_overrides(tmp, steps=2), "launcher=slurm_local", "sweep.id=grid", *GRID]
    submit = _ok(grpolab(slurm, *args, "--detach"))
    collect = _ok(grpolab(slurm, "collect", str(tmp / "out" / "sweeps" / "grid"), "--poll", "1", "--timeout", "800"))
    return tmp, args, submit, collect


def test_detached_2x2x2_sweep_is_one_job_array_with_8_completed_records_and_a_table(finished_sweep):
    tmp, _, submit, collect = finished_sweep
    assert "submitted 8 jobs" in submit.stdout and "sweep id: grid" in submit.stdout
    sweep = tmp / "out" / "sweeps" / "grid"
    jobs = json.loads((sweep / "jobs.json").read_text())
    assert len(jobs) == 8 and len({ids[0].split("_")[0] for ids in jobs.values()}) == 1  # one array
    summaries = [json.loads(p.read_text()) for p in sweep.glob("runs/*/summary.json")]
    assert len(summaries) == 8 and all(s["status"] == "completed" for s in summaries)
    table = (sweep / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 0")]
    assert len(rows) == 4 and all(line.rstrip().endswith("| 2 |") for line in rows), table  # 4 cells × 2 seeds
    assert "8 completed" in collect.stdout
    assert list(sweep.glob("logs/*/*.out"))  # per-job logs in the sweep dir


def test_status_shows_every_cell_and_a_progress_summary(slurm, finished_sweep):
    tmp, *_ = finished_sweep
    out = _ok(grpolab(slurm, "status", "grid", "--root", str(tmp / "out")))
    assert "8 cells: 8 completed; 16/16 steps (100%)" in out.stdout
    assert out.stdout.count("completed ") >= 8


def test_rerun_submits_nothing_and_a_deleted_record_resubmits_exactly_that_cell(slurm, finished_sweep):
    tmp, args, *_ = finished_sweep
    sweep = tmp / "out" / "sweeps" / "grid"
    again = _ok(grpolab(slurm, *args, "--detach"))
    assert "submitted 0 jobs" in again.stdout and "skipped 8 completed" in again.stdout
    victim = sorted(p.name for p in (sweep / "runs").iterdir())[3]
    shutil.rmtree(sweep / "runs" / victim)
    before = json.loads((sweep / "jobs.json").read_text())
    third = _ok(grpolab(slurm, *args, "--detach"))
    assert "submitted 1 jobs (1 new or missing" in third.stdout and "skipped 7 completed" in third.stdout
    after = json.loads((sweep / "jobs.json").read_text())
    assert [n for n in after if after[n] != before[n]] == [victim]
    _ok(grpolab(slurm, "collect", str(sweep), "--poll", "1", "--timeout", "300"))
    assert json.loads((sweep / "runs" / victim / "summary.json").read_text())["status"] == "completed"


def test_invalid_cell_submits_nothing_and_names_cell_and_key(slurm, tmp_path):
    before = subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm, capture_output=True, text=True).stdout
    out = grpolab(
        slurm,
        "sweep",
        *fast_overrides(tmp_path),
        "launcher=slurm_local",
        "sweep.id=bad",
        "algorithm.clip.low=0.2,1.5",
        "--detach",
    )
    assert out.returncode == 2
    assert "cell 1" in out.stderr and "algorithm.clip.low=1.5" in out.stderr and "nothing was launched" in out.stderr
    assert not (tmp_path / "out" / "sweeps" / "bad").exists()
    names = subprocess.run(["squeue", "-h", "-o", "%j"], env=slurm, capture_output=True, text=True).stdout
    assert "grpolab-bad" not in names
    after = subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm, capture_output=True, text=True).stdout
    assert set(after.split()) <= set(before.split())  # no new job (earlier tests' jobs may have ended)


def _wait(predicate, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _steps_done(run_dir: Path) -> int:
    return max((r.get("step", 0) for r in read_jsonl(run_dir / "metrics.jsonl")), default=-1)


@pytest.mark.parametrize("how", ["usr2", "scontrol_requeue"])
def test_preempted_job_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(slurm, tmp_path, how):
    """USR2 (time limit / preemption warning): the job checkpoints and requeues itself.
    ``scontrol requeue`` (SLURM ends the job: TERM): the job checkpoints, SLURM requeues it."""
    overrides = [*fast_overrides(tmp_path, steps=40), "train.eval_every=10", "rollout.max_new_tokens=24"]
    _ok(grpolab(slurm, "sweep", *overrides, "launcher=slurm_local", f"sweep.id={how}", "--detach"))
    sweep = tmp_path / "out" / "sweeps" / how
    ((name, (job_id,)),) = json.loads((sweep / "jobs.json").read_text()).items()
    run_dir = sweep / "runs" / name
    _wait(lambda: _steps_done(run_dir) >= 2, 300, "the job's second step")
    if how == "usr2":
        subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm, check=True)
    else:
        subprocess.run(["scontrol", "requeue", job_id], env=slurm, check=True)
    _ok(grpolab(slurm, "collect", str(sweep), "--poll", "1", "--timeout", "600"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    assert summary["attempt"] == 2 and 2 <= summary["resumed_from_step"] < 40, summary
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["run_id"] == name  # the same run record continued
    cfg = compose(overrides)
    whole = run_training(cfg, tmp_path / "whole", log=lambda *a: None)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(41))
    assert _deterministic(rows) == _deterministic(read_jsonl(tmp_path / "whole" / "metrics.jsonl"))
    assert summary["final_eval_accuracy"] == whole.final_eval_accuracy
    assert summary["final_reward"] == whole.final_reward


def test_a_job_reaching_its_time_limit_checkpoints_requeues_itself_and_completes(slurm, tmp_path):
    """SLURM's own warning signal (sbatch --signal=USR2@signal_delay_s before the 1-minute limit)."""
    overrides = [*fast_overrides(tmp_path, steps=500), "train.eval_every=100"]
    # ~15 s of each 1-minute attempt trains; how many attempts 500 steps need depends on the
    # machine's load, so the requeue bound is generous (the bound itself is tested elsewhere)
    _ok(
        grpolab(
            slurm,
            "sweep",
            *overrides,
            "launcher=slurm_local",
            "launcher.time_min=1",
            "launcher.signal_delay_s=45",
            "launcher.max_requeues=20",
            "sweep.id=tl",
            "--detach",
        )
    )
    sweep = tmp_path / "out" / "sweeps" / "tl"
    _ok(grpolab(slurm, "collect", str(sweep), "--poll", "1", "--timeout", "600"))
    (run_dir,) = (sweep / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["attempt"] >= 2, summary
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == list(range(501))
    logs = "".join(p.read_text() for p in sorted(sweep.glob("logs/*/*.out")) + sorted(sweep.glob("logs/*/*.err")))
    assert "caught SIGUSR2" in logs and "it resumes from the checkpoint" in logs  # the signal line is on stderr


def _usr2_caught(env, job_id: str) -> bool:
    """Whether task 0 of the job's step 0 has a USR2 handler: sweeps.job_boot's first line ran (the
    ``SigCgt`` mask in /proc; the single-node cluster runs its tasks on this machine)."""
    out = subprocess.run(["scontrol", "listpids", f"{job_id}.0"], env=env, capture_output=True, text=True)
    for line in out.stdout.splitlines()[1:]:
        pid, _job, _step, local_id, *_ = line.split()
        if local_id != "0":
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        caught = next(int(x.split()[1], 16) for x in status.splitlines() if x.startswith("SigCgt:"))
        return bool(caught >> (signal.SIGUSR2 - 1) & 1)
    return False


def test_a_usr2_that_arrives_while_the_job_starts_is_not_fatal(slurm, tmp_path):
    """SLURM sends ``--signal=USR2@N`` up to a scheduler period early, and a preemption warning can
    come at any time: the moment the job's Python holds USR2 (sweeps.job_boot's first line, seconds
    before the trainer's imports are done and its StopFlag is installed), the signal is held, then
    handled: checkpoint at step 0, requeue, complete on the second attempt."""
    overrides = [*fast_overrides(tmp_path, steps=4)]
    _ok(grpolab(slurm, "sweep", *overrides, "launcher=slurm_local", "sweep.id=early", "--detach"))
    sweep = tmp_path / "out" / "sweeps" / "early"
    ((name, (job_id,)),) = json.loads((sweep / "jobs.json").read_text()).items()
    end = time.time() + 120
    while not _usr2_caught(slurm, job_id):
        assert time.time() < end, "the job's Python never installed a USR2 handler"
        time.sleep(0.005)
    subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm, check=True)
    _ok(grpolab(slurm, "collect", str(sweep), "--poll", "1", "--timeout", "600"))
    summary = json.loads((sweep / "runs" / name / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["attempt"] == 2, summary
    assert [r["step"] for r in read_jsonl(sweep / "runs" / name / "metrics.jsonl")] == list(range(5))
    # the held path, not a handler that happened to be installed already
    (first_log,) = (sweep / "logs" / job_id).glob("*_log.err")
    assert "caught SIGUSR2 while the job started" in first_log.read_text()


def test_a_cell_of_two_tasks_is_one_data_parallel_run_that_survives_preemption(slurm, tmp_path):
    """``launcher.tasks_per_node=2``: srun starts 2 tasks, each one DeepSpeed ZeRO-2 rank (gloo).
    USR2 mid-run: both ranks agree to stop at the same step, checkpoint together, rank 0 requeues
    the job once; the resumed 2-rank run equals an uninterrupted 2-rank run (torchrun)."""
    pytest.importorskip("deepspeed")
    overrides = [
        *fast_overrides(tmp_path, steps=30),
        "model.hidden_size=64",
        "model.intermediate_size=128",
        "model.num_layers=2",
        "sft.steps=150",
        "train.eval_every=10",
        "rollout.max_new_tokens=24",
        "engine=deepspeed_zero2",
    ]
    _ok(
        grpolab(
            slurm, "sweep", *overrides, "launcher=slurm_local", "launcher.tasks_per_node=2", "sweep.id=dp", "--detach"
        )
    )
    sweep = tmp_path / "out" / "sweeps" / "dp"
    ((name, (job_id,)),) = json.loads((sweep / "jobs.json").read_text()).items()
    run_dir = sweep / "runs" / name
    _wait(lambda: _steps_done(run_dir) >= 2, 300, "the job's second step")
    subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm, check=True)
    _ok(grpolab(slurm, "collect", str(sweep), "--poll", "1", "--timeout", "600"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["attempt"] == 2, summary
    assert json.loads((run_dir / "meta.json").read_text())["world_size"] == 2
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(31))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    whole = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "sweeps.cli",
            "train",
            *overrides,
            "--run-dir",
            str(tmp_path / "whole"),
        ],
        cwd=ROOT,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    _ok(whole)
    assert _deterministic(rows) == _deterministic(read_jsonl(tmp_path / "whole" / "metrics.jsonl"))
