"""Optuna tuning machinery (sweeps/tune.py): space grammar, ask-and-tell over concurrent workers on
journal storage, in-job pruning, objective = mean over seeds.

The study test drives the real machinery (Optuna 5, journal file, two worker processes, the
``TrialReporter`` a trainer calls) with a cheap objective that behaves like training: a known
function of the params, reported step by step, with per-seed noise. One slow test runs the real
tiny trainer."""

from __future__ import annotations

import math
import os
import re
import time

import optuna
import pytest

from sweeps.tune import (
    TrialReporter,
    create_study,
    default_storage,
    load_study,
    make_pruner,
    open_storage,
    parse_space,
    run_study,
    to_overrides,
    trial_handle,
)
from sweeps.tune_launch import TrainerLaunch

STEPS = 4
GOOD, BAD = 0.01, 1e-4  # kl coef of a good and a bad trial for the fake objective


def _param(overrides: list[str], key: str) -> float:
    return float(next(o.split("=", 1)[1] for o in overrides if o.startswith(key + "=")))


def fake_quality(kl_coef: float, eta: float) -> float:
    """Peak 1.0 at kl_coef = 0.01, eta = 0.5."""
    return 1.0 - 0.1 * (math.log10(kl_coef) + 2) ** 2 - (eta - 0.5) ** 2


def fake_training(overrides: list[str], seed: int, ctx) -> float:
    """Like a run: eval accuracy climbs to its final value over STEPS, reported at each step."""
    storage = open_storage(ctx.storage)
    study_id = storage.get_study_id_from_name(ctx.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, ctx.trial_number)
    storage.set_trial_user_attr(trial_id, f"pid_s{seed}", os.getpid())
    q = fake_quality(_param(overrides, "algorithm.kl.coef"), _param(overrides, "algorithm.lopti.eta"))
    final = q + 0.01 * seed  # seed noise, so the mean over seeds is distinguishable from any one seed
    report = TrialReporter(ctx)
    for step in range(1, STEPS + 1):
        time.sleep(0.02)
        if report(step, final * step / STEPS):
            raise optuna.TrialPruned()
    return final


SPACE = {"algorithm.kl.coef": "float:1e-4:1e-1:log", "algorithm.lopti.eta": "float:0.3:0.7"}


def test_space_grammar_parses_each_kind():
    space = {**SPACE, "batching.mode": "cat:shuffled,query_preserved", "rollout.n": "int:4:16"}
    ps = {p.key: p for p in parse_space(space)}
    kl, eta = ps["algorithm.kl.coef"], ps["algorithm.lopti.eta"]
    assert (kl.kind, kl.log, kl.low) == ("float", True, 1e-4)
    assert (eta.low, eta.high, eta.log) == (0.3, 0.7, False)
    assert ps["batching.mode"].choices == ("shuffled", "query_preserved")
    assert (ps["rollout.n"].kind, ps["rollout.n"].low, ps["rollout.n"].high) == ("int", 4, 16)


@pytest.mark.parametrize("space", [{"seed": "int:0:9"}, {"a.b": "float:1:0"}, {"a.b": "float:0:1:log"},
                                   {"a.b": "gauss:0:1"}, {"a.b": "int:x:3"}, {"a.b": "cat:"}])
def test_bad_space_is_refused_naming_the_key(space):
    with pytest.raises(ValueError, match=list(space)[0].replace(".", r"\.")):
        parse_space(space)


def test_params_become_hydra_overrides():
    params = {"algorithm.kl.coef": 0.013, "batching": "query_preserved", "x.flag": True, "rollout.n": 8}
    assert to_overrides(params) == ["algorithm.kl.coef=0.013", "batching=query_preserved", "x.flag=true", "rollout.n=8"]


def test_pruner_spec():
    p = make_pruner("median:3:1")
    assert isinstance(p, optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("none"), optuna.pruners.NopPruner)
    with pytest.raises(ValueError, match="tune pruner"):
        make_pruner("sometimes")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_trial_handle_reports_to_the_trial_another_process_asked(tmp_path, kind):
    """The one semi-private Optuna call (``optuna.trial.Trial(study, trial_id)``, kept in
    ``sweeps.tune.trial_handle``): a handle built from the storage alone, as a job builds it, writes
    into the trial the worker asked and asks the study's pruner about that trial. If this fails
    after an Optuna upgrade, ``trial_handle`` needs updating."""
    storage = f"sqlite:///{tmp_path}/h.db" if kind == "sqlite" else f"journal:{tmp_path}/h.journal"
    study = create_study(storage, "h", ["maximize"], pruner="median:1:0")
    done = study.ask()
    done.report(1.0, 1)
    study.tell(done, 1.0)  # median at step 1 is now 1.0
    low, high = study.ask(), study.ask()  # asked by the worker; a job knows storage, study name, number
    opened = open_storage(storage)
    job_study = load_study(opened, "h")
    for asked, value, pruned in ((low, 0.1, True), (high, 2.0, False)):
        handle = trial_handle(job_study, opened, asked.number)
        assert handle.number == asked.number
        handle.report(value, 1)
        assert bool(handle.should_prune()) is pruned
    values = {t.number: t.intermediate_values for t in study.get_trials()}
    assert values == {done.number: {1: 1.0}, low.number: {1: 0.1}, high.number: {1: 2.0}}
    with pytest.raises(KeyError):
        trial_handle(job_study, opened, high.number + 1)  # no such trial: Optuna's storage says so


def test_trial_handle_fails_loudly_when_optuna_builds_trials_otherwise(tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path}/h.db"
    study = create_study(storage, "h", ["maximize"])
    number = study.ask().number

    class Changed:  # as if a future Optuna took other arguments
        def __init__(self, study, trial_id, *, required):
            pass

    monkeypatch.setattr(optuna.trial, "Trial", Changed)
    with pytest.raises(RuntimeError, match=r"optuna .* no longer builds a Trial.*update sweeps.tune.trial_handle"):
        trial_handle(load_study(storage, "h"), open_storage(storage), number)


def test_a_study_without_storage_lives_in_one_sqlite_file_under_its_root(tmp_path):
    url = default_storage(tmp_path / "root")
    assert url == f"sqlite:///{(tmp_path / 'root').resolve()}/optuna.db" and (tmp_path / "root").is_dir()
    create_study(open_storage(None, tmp_path / "root"), "s", ["maximize"])
    assert (tmp_path / "root" / "optuna.db").is_file()
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["s"]


def test_study_with_two_worker_processes_on_journal_storage_prunes_and_averages_seeds(tmp_path):
    storage = f"journal:{tmp_path}/study.journal"
    seeds = [0, 1, 2]
    # Created before any worker, as under SLURM. Enqueued: the best trial first (nothing can beat
    # it, so it completes), a good one, then two bad ones; a bad one starts only after one of the
    # first two ended, by which time the best has completed (n_startup_trials=1): it must be pruned.
    study = create_study(storage, "s", ["maximize"], pruner="median:1:0", sampler_seed=0)
    for kl in (GOOD, GOOD * 1.2, BAD, BAD * 1.1):
        study.enqueue_trial({"algorithm.kl.coef": kl, "algorithm.lopti.eta": 0.5})
    t0 = time.time()
    study = run_study([], SPACE, n_trials=8, seeds=seeds, storage=storage, study_name="s", workers=2,
                      launch_fn=fake_training, pruner="median:1:0", processes=True, steps_per_seed=STEPS)
    elapsed = time.time() - t0
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 8
    assert optuna.trial.TrialState.FAIL not in states and optuna.trial.TrialState.RUNNING not in states
    assert trials[0].state == optuna.trial.TrialState.COMPLETE
    assert optuna.trial.TrialState.PRUNED in states
    bad = [t for t in trials if t.params["algorithm.kl.coef"] <= BAD * 1.1]
    assert bad and all(t.state == optuna.trial.TrialState.PRUNED for t in bad)
    pids = set()
    for t in trials:
        assert set(t.params) == set(SPACE)  # seeds are never searched
        if t.state == optuna.trial.TrialState.COMPLETE:
            per_seed = t.user_attrs["seed_values"]
            assert sorted(per_seed) == ["0", "1", "2"]
            q = fake_quality(t.params["algorithm.kl.coef"], t.params["algorithm.lopti.eta"])
            assert t.value == pytest.approx(sum(v[0] for v in per_seed.values()) / 3)
            assert t.value == pytest.approx(q + 0.01)  # mean of q + 0.01·{0, 1, 2}
        pids |= {v for k, v in t.user_attrs.items() if k.startswith("pid_")}
    assert len(pids - {os.getpid()}) == 2, "trials ran in two worker processes"
    assert elapsed < 60


def test_multi_objective_study_uses_nsga2_and_completes(tmp_path):
    def two_objectives(overrides, seed, ctx):
        kl = _param(overrides, "algorithm.kl.coef")
        return [fake_quality(kl, 0.5) + 0.01 * seed, kl]  # accuracy (max) vs KL proxy (min)

    study = run_study([], {"algorithm.kl.coef": "float:1e-4:1e-1:log"}, n_trials=4, seeds=[0, 1],
                      storage=f"sqlite:///{tmp_path}/o.db", study_name="mo", directions=["maximize", "minimize"],
                      workers=2, launch_fn=two_objectives)
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    for t in trials:
        assert t.values[1] == pytest.approx(t.params["algorithm.kl.coef"])
        assert t.values[0] == pytest.approx(fake_quality(t.params["algorithm.kl.coef"], 0.5) + 0.005)
    assert study.best_trials


def test_failed_cell_fails_its_trial_not_the_study(tmp_path):
    def broken(overrides, seed, ctx):
        raise RuntimeError("diverged")

    study = run_study([], SPACE, n_trials=2, seeds=[0], storage=f"journal:{tmp_path}/f.journal",
                      study_name="f", workers=1, launch_fn=broken)
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.FAIL] * 2
    assert "diverged" in study.get_trials()[0].user_attrs["error"]


@pytest.mark.slow
def test_two_trials_of_the_real_tiny_trainer(tmp_path):
    from tests.conftest import fast_overrides

    launch = TrainerLaunch(str(tmp_path / "tune"), objectives=("final_eval_accuracy", "train/kl"))
    study = run_study(fast_overrides(tmp_path, steps=2), {"algorithm.kl.coef": "float:1e-3:1e-1:log"},
                      n_trials=2, seeds=[0, 1], storage=f"sqlite:///{tmp_path}/t.db", study_name="real",
                      directions=["maximize", "minimize"], workers=1, launch_fn=launch, steps_per_seed=2)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in trials:
        per_seed = t.user_attrs["seed_values"]
        assert t.values[0] == pytest.approx((per_seed["0"][0] + per_seed["1"][0]) / 2)
        assert (tmp_path / "tune" / "runs" / f"t{t.number:04d}_s1" / "summary.json").exists()


@pytest.mark.slow
def test_tune_from_config_runs_cells_as_local_submitit_jobs(tmp_path):
    """What `grpolab tune` does, with the tune section a plain object until it is in the schema."""
    from types import SimpleNamespace

    from sweeps.compose import compose
    from sweeps.tune_launch import tune_from_config
    from tests.conftest import fast_overrides

    overrides = [*fast_overrides(tmp_path, steps=2), "sweep.seeds=[0,1]"]
    cfg = compose(overrides)
    cfg.tune = SimpleNamespace(space={"algorithm.kl.coef": "float:1e-3:1e-1:log"}, n_trials=2,
                               objectives=["final_eval_accuracy"], directions=["maximize"], sampler=None,
                               pruner="median:2:0", storage=None, study_name="cli", workers=2)
    lines = []
    study = tune_from_config(cfg, overrides, log=lines.append)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    root = tmp_path / "out" / "tune" / "cli"
    assert (root / "optuna.db").exists()
    runs = sorted(d.name for d in (root / "runs").iterdir())
    assert runs == [f"t{t:04d}_s{s}" for t in (0, 1) for s in (0, 1)]
    assert all((root / "runs" / r / "summary.json").exists() for r in runs)
    for t in trials:
        per_seed = t.user_attrs["seed_values"]
        assert t.value == pytest.approx((per_seed["0"][0] + per_seed["1"][0]) / 2)
    ended = [line for line in lines if re.match(r"trial \d+ ", line)]  # a line per trial as it ends, then the study
    assert sorted(line.split()[1] for line in ended) == ["0", "1"]
    assert lines[len(ended)].startswith("study cli: 2 trials (2 complete)")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The local SLURM test cluster: tests/test_slurm.py's fixture (starts it if needed and stops it
    after, skips where it cannot run), imported only when a test here asks for it (it loads torch)."""
    from tests import test_slurm

    yield from test_slurm.slurm.__wrapped__(tmp_path_factory)


@pytest.mark.slow
def test_grpolab_tune_runs_each_trial_seed_as_a_slurm_job(tmp_path, slurm):
    """`grpolab tune launcher=slurm_local` on a journal storage: every (trial, seed) is one SLURM job
    of the local test cluster (slurm/start.sh), which reports to the study itself; each trial's value
    is the mean of its seeds' values."""
    import json
    import subprocess
    import sys

    from tests.conftest import fast_overrides
    from tests.test_slurm import ROOT

    journal = tmp_path / "study.journal"
    overrides = [*fast_overrides(tmp_path, steps=2), "launcher=slurm_local", "sweep.seeds=[0,1]",
                 '++tune.space={algorithm.kl.coef: "float:1e-3:1e-1:log"}', "tune.n_trials=2", "tune.workers=2",
                 f"tune.storage=journal:{journal}", "tune.study_name=slurmtune"]
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "sweeps.cli", "tune", *overrides], cwd=ROOT, env=slurm,
                         capture_output=True, text=True, timeout=300)
    print(f"grpolab tune took {time.time() - t0:.1f} s")
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert "study slurmtune: 2 trials (2 complete)" in out.stdout

    study = optuna.load_study(study_name="slurmtune", storage=open_storage(f"journal:{journal}"))
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    root = tmp_path / "out" / "tune" / "slurmtune"
    job_ids = []
    for t in trials:
        per_seed = t.user_attrs["seed_values"]
        assert sorted(per_seed) == ["0", "1"]
        assert t.value == pytest.approx((per_seed["0"][0] + per_seed["1"][0]) / 2)
        for seed in (0, 1):
            run_dir = root / "runs" / f"t{t.number:04d}_s{seed}"
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary["status"] == "completed"
            assert per_seed[str(seed)][0] == pytest.approx(summary["final_eval_accuracy"])
            meta = json.loads((run_dir / "meta.json").read_text())
            assert meta["slurm_job_id"] and meta["tune"]["trial"] == t.number
            job_ids.append(meta["slurm_job_id"])
    assert len(set(job_ids)) == 4  # one job per (trial, seed)
    # SLURM's accounting: four jobs of the study; a job's process may still be exiting when its
    # result is read, so wait for it to end
    deadline = time.time() + 60
    while True:
        acct = subprocess.run(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", "JobID,JobName,State"],
                              env=slurm, capture_output=True, text=True, timeout=30)
        states = {line.split("|")[0]: line.split("|")[1:] for line in acct.stdout.split()}
        if all(states.get(j, [None, None])[1] not in (None, "PENDING", "RUNNING", "COMPLETING") for j in job_ids) \
                or time.time() > deadline:
            break
        time.sleep(1)
    assert all(states[j] == ["grpolab-slurmtune", "COMPLETED"] for j in job_ids), acct.stdout
