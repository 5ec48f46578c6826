"""Secrets are never written (trainer/secrets.py): what counts as one, where it is redacted, that the
run still computes with the real config, that a job gets launcher.env from its environment, and a
real local sweep with W&B offline that writes none of the planted values anywhere."""

from __future__ import annotations

import json
import os
import pickle
import secrets
import stat
import string
from pathlib import Path

import pytest

from trainer.secrets import REDACTED, is_secret_key, looks_secret, redact_config, redact_override

HEX40 = "0123456789abcdef" * 2 + "01234567"


@pytest.mark.parametrize("key", ["HF_TOKEN", "token", "WANDB_API_KEY", "apiKey", "access-key", "aws_secret_access_key",
                                 "private_key", "DB_PASS", "passwd", "password", "auth", "Authorization", "authToken",
                                 "credentials", "credential", "OPENAI_KEY", "key", "SSH_KEY", "session_id", "COOKIE",
                                 "private", "jsonl.api-key"])
def test_secret_looking_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["max_new_tokens", "prompt_key", "answer_key", "num_kv_heads", "tokenizer", "author",
                                 "passes", "bypass", "PWD", "HF_HOME", "keyword", "keep", "keys", "monkey",
                                 "task.jsonl.solution_key", "tokens_per_s"])
def test_words_that_merely_contain_one_are_not_secret(key):
    assert not is_secret_key(key)


@pytest.mark.parametrize("value", ["hf_" + "a1B2" * 9, "sk-proj-" + "x9" * 12, "ghp_" + "Z" * 36,
                                   "github_pat_11AB" + "c" * 30, "xoxb-123-456-abcdefghij", "xoxp-1234567890ab",
                                   "AKIAIOSFODNN7EXAMPLE", HEX40, "bearer " + HEX40.upper(),
                                   "postgresql://user:hunter2@db.example/optuna", "gho_" + "a" * 36,
                                   "glpat-" + "x1" * 10, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_-Part"])
def test_secret_looking_values(value):
    assert looks_secret(value)


@pytest.mark.parametrize("value", ["hf_home", "sk-short", "ghp_x", HEX40[:39], HEX40 + "0", "gpu", "/scratch/hf",
                                   "sqlite:///outputs/tune/kl/optuna.db", "journal:/shared/s.journal", "a100&ib",
                                   "eyJust.a.word", "glpat-short"])
def test_ordinary_values_are_not(value):
    assert not looks_secret(value)


def test_a_config_tree_is_redacted_where_a_secret_can_be_and_nowhere_else():
    tree = {
        "launcher": {"env": {"HF_HOME": "/scratch/hf", "A": "b"}, "partition": "gpu",
                     "sbatch_extra": {"comment": "ci hf_abcdefghijklmnopqrst"}},
        "tracker": {"tags": ["baseline", "ghp_" + "Q" * 36], "project": "grpolab"},
        "tune": {"storage": "postgresql://u:pw@h/db", "space": {"launcher.env.X": "cat:a,b", "seed2": "int:0:1"}},
        "sweep": {"params": {"launcher.env.X": "1,2", "algorithm.kl.coef": "0,0.05"}},
        "model": {"path": f"/hub/models--x/snapshots/{HEX40}"},  # a result's value: recorded as given
        "algorithm": {"kl": {"coef": 0.05}},
    }
    out = redact_config(tree)
    assert out["launcher"] == {"env": {"HF_HOME": REDACTED, "A": REDACTED}, "partition": "gpu",
                               "sbatch_extra": {"comment": f"ci {REDACTED}"}}
    assert out["tracker"] == {"tags": ["baseline", REDACTED], "project": "grpolab"}
    assert out["tune"] == {"storage": f"postgresql://u:{REDACTED}@h/db",
                           "space": {"launcher.env.X": REDACTED, "seed2": "int:0:1"}}
    assert out["sweep"]["params"] == {"launcher.env.X": REDACTED, "algorithm.kl.coef": "0,0.05"}
    assert out["model"] == tree["model"] and out["algorithm"] == tree["algorithm"]
    assert tree["launcher"]["env"]["A"] == "b"  # a copy: the run keeps its config


@pytest.mark.parametrize("override,recorded", [
    ("+launcher.env.HF_TOKEN=hf_x", f"+launcher.env.HF_TOKEN={REDACTED}"),
    ("++launcher.env.HF_HOME=/scratch/hf", f"++launcher.env.HF_HOME={REDACTED}"),
    ("launcher.env={A: b}", f"launcher.env={REDACTED}"),
    (f"+launcher.env.MY_SERVICE={HEX40}", f"+launcher.env.MY_SERVICE={REDACTED}"),
    ("+launcher.sbatch_extra.comment=sk-abcdefghijklmnopqrstu", f"+launcher.sbatch_extra.comment={REDACTED}"),
    ("tracker.tags=[a,ghp_" + "b" * 30 + "]", f"tracker.tags=[a,{REDACTED}]"),
    ("+x.db_password=hunter2", f"+x.db_password={REDACTED}"),
    (f"model.path=/snap/{HEX40}", f"model.path=/snap/{HEX40}"),
    ("algorithm.kl.coef=0,0.05", "algorithm.kl.coef=0,0.05"),
    ("launcher=slurm", "launcher=slurm"),
    ("~launcher.env.X", "~launcher.env.X"),
])
def test_overrides_are_recorded_redacted(override, recorded):
    assert redact_override(override) == recorded


# ---------------------------------------------------------------- the run keeps its config
PLANTED = {"HF_TOKEN": "hf_" + "Tk" * 17, "DB_PASS": "correct-horse-battery-staple", "MY_SERVICE": HEX40}


def _overrides(tmp_path) -> list[str]:
    return [f"paths.output_root={tmp_path}/out", *(f"+launcher.env.{k}={v}" for k, v in PLANTED.items())]


def test_the_config_hash_does_not_depend_on_a_secret(tmp_path):
    from sweeps.compose import compose
    from trainer.identity import config_hash

    plain = compose([f"paths.output_root={tmp_path}/out"])
    assert config_hash(compose(_overrides(tmp_path) + ["tracker.tags=[ghp_" + "q" * 36 + "]"])) == config_hash(plain)


def test_run_meta_redacts_overrides_and_swept_values(tmp_path):
    from sweeps.compose import compose
    from trainer.identity import run_meta

    overrides = _overrides(tmp_path)
    meta = run_meta(compose(overrides), tmp_path / "r", overrides=overrides, swept={"launcher.env.HF_TOKEN": "x"})
    assert meta.overrides[0] == f"paths.output_root={tmp_path}/out"
    assert meta.overrides[1:] == [f"+launcher.env.{k}={REDACTED}" for k in PLANTED]
    assert meta.swept == {"launcher.env.HF_TOKEN": REDACTED}


def test_a_jobs_pickle_holds_no_secret_and_the_job_reads_env_back_from_its_environment(tmp_path, monkeypatch):
    from sweeps.compose import compose
    from sweeps.job import CellJob
    from trainer.identity import run_meta, to_dict

    cfg = compose(_overrides(tmp_path) + ["tracker.tags=[base,ghp_" + "q" * 36 + "]"])
    meta = run_meta(cfg, tmp_path / "r", overrides=_overrides(tmp_path))
    data = pickle.dumps(CellJob(cfg, str(tmp_path / "r"), meta))
    for value in [*PLANTED.values(), "ghp_" + "q" * 36]:
        assert value.encode() not in data, value
    assert cfg.launcher.env == PLANTED  # pickling left the run's own config alone
    for k in PLANTED:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_TOKEN", PLANTED["HF_TOKEN"])  # as the launcher exports it
    job = pickle.loads(data)
    assert job.cfg.launcher.env == {"HF_TOKEN": PLANTED["HF_TOKEN"], "DB_PASS": REDACTED, "MY_SERVICE": REDACTED}
    assert job.cfg.tracker.tags == ["base", REDACTED]  # what W&B would log of them anyway
    same = {k: v for k, v in to_dict(job.cfg).items() if k not in ("launcher", "tracker")}
    assert same == {k: v for k, v in to_dict(cfg).items() if k not in ("launcher", "tracker")}


def test_record_files_are_created_owner_only(tmp_path):
    from trainer.run_record import Meta, RunRecord, Summary, atomic_write_json

    old = os.umask(0o022)
    try:
        record = RunRecord(tmp_path / "run")
        record.write_config("a: 1\n")
        record.write_meta(Meta(run_id="r", config_hash="h", seed=0))
        record.write_summary(Summary())
        record.append_metrics({"step": 0})
        atomic_write_json(tmp_path / "sweep.json", {})
    finally:
        os.umask(old)
    files = [*record.dir.iterdir(), tmp_path / "sweep.json"]
    assert len(files) == 5 and {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


def test_job_environment_and_private_files_leave_this_process_as_they_found_it(monkeypatch):
    from sweeps.job_env import job_environment, private_files

    monkeypatch.setenv("KEEP", "old")
    monkeypatch.delenv("NEW_ONE", raising=False)
    before = os.umask(0o022)
    try:
        with private_files(), job_environment({"KEEP": "new", "NEW_ONE": "x"}):
            assert os.environ["KEEP"] == "new" and os.environ["NEW_ONE"] == "x"
            assert os.umask(0o077) == 0o077
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
    assert os.environ["KEEP"] == "old" and "NEW_ONE" not in os.environ


# ---------------------------------------------------------------- a real sweep
# The job's environment at start, seen from inside the job process: a sitecustomize module on the
# job's PYTHONPATH (every Python process imports it first) records a digest of each planted name's
# value, in the submitit task process only (SUBMITIT_LOCAL_JOB_ID is set there). Digests, so the probe
# itself writes no planted value; the grpolab code under test is untouched.
PROBE = """
import hashlib, json, os
if os.environ.get("SUBMITIT_LOCAL_JOB_ID"):
    seen = {{k: hashlib.sha256(os.environ[k].encode()).hexdigest() if k in os.environ else None for k in {names!r}}}
    with open(os.path.join({out!r}, f"env-{{os.getpid()}}.json"), "w") as f:
        json.dump(seen, f)
"""


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.slow
def test_a_local_sweep_writes_no_secret_and_its_job_sees_them(tmp_path, monkeypatch):
    from sweeps.cli import main
    from tests.conftest import fast_overrides
    from trainer.tracking import offline_run_files, read_offline_run

    rnd = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(34))
    planted = {"HF_TOKEN": f"hf_{rnd}", "DB_PASS": f"db-pass-{rnd[:12]}", "MY_SERVICE": secrets.token_hex(20)}
    tag = f"ghp_{rnd}{rnd[:2]}"
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(PROBE.format(names=sorted(planted), out=str(probe)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(probe), *filter(None, [os.environ.get("PYTHONPATH")])]))
    for k in planted:
        monkeypatch.delenv(k, raising=False)
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = [*fast_overrides(tmp_path, steps=1), "sweep.id=secrets", "tracker=wandb", "tracker.mode=offline",
                 f"tracker.tags=[baseline,{tag}]", *(f"+launcher.env.{k}={v}" for k, v in planted.items())]
    import wandb

    # W&B's service process outlives a run, and later runs of this process and of its children (through
    # the environment) write through it: one started by an earlier test under umask 022 wrote this sweep's
    # W&B files 0644. A grpolab command sets its umask before any W&B service starts; here, make it so.
    wandb.teardown()
    assert main(["sweep", *overrides]) == 0
    assert not set(planted) & set(os.environ)  # the submitting process is as it was

    # the job saw every value, exactly
    [seen] = [json.loads(p.read_text()) for p in probe.glob("env-*.json")]
    assert seen == {k: _sha(v) for k, v in planted.items()}

    sweep = tmp_path / "out" / "sweeps" / "secrets"
    [run] = list((sweep / "runs").iterdir())
    files = [f for f in tmp_path.rglob("*") if f.is_file() and probe not in f.parents]
    pickles = [f for f in files if f.suffix == ".pkl"]
    wandb_logs = list(offline_run_files(run))
    assert pickles and wandb_logs and (sweep / "sweep.json") in files and (run / "config.yaml") in files
    needles = [v.encode() for v in (*planted.values(), tag)]
    leaks = [(str(f.relative_to(tmp_path)), n.decode()) for f in files for n in needles if n in f.read_bytes()]
    assert leaks == [], f"{len(files)} files searched"
    # not vacuous: the names are recorded, the values are not; the harmless tag is in W&B
    text = (run / "config.yaml").read_text() + (run / "meta.json").read_text() + (sweep / "sweep.json").read_text()
    assert all(f"{k}: {REDACTED}" in text and f"+launcher.env.{k}={REDACTED}" in text for k in planted)
    wb = read_offline_run(wandb_logs[0])
    assert "baseline" in wb["tags"] and REDACTED in wb["tags"]
    assert wb["config"]["launcher"]["env"] == {k: REDACTED for k in planted}

    # records, pickles and logs are their owner's only
    modes = {str(f.relative_to(sweep)): oct(stat.S_IMODE(f.stat().st_mode)) for f in sweep.rglob("*") if f.is_file()}
    assert {m for m in modes.values()} == {"0o600"}, {f: m for f, m in modes.items() if m != "0o600"}
    assert any(Path(p).suffix == ".pkl" for p in modes)


# ---------------------------------------------------------------- SLURM: the script is the transport
def test_a_slurm_job_gets_env_from_its_script_and_no_other_file_holds_a_secret(stub_slurm, capsys, monkeypatch):
    """The sbatch script exports launcher.env (that is how a SLURM job gets it; the script is 0600);
    every other file of the sweep holds none of the values, and the job rebuilt from its pickle in
    that environment has them all."""
    import subprocess

    from sweeps.cli import main

    work, scripts, record = stub_slurm
    tag = "ghp_" + "t" * 36
    args = ["sweep", "--detach", "launcher=slurm", "launcher.snapshot_code=false", "paths.output_root=out",
            "sweep.id=sec", "seed=0,1", f"tracker.tags=[{tag}]",
            *(f"+launcher.env.{k}={v}" for k, v in PLANTED.items())]
    assert main(args) == 0
    console = capsys.readouterr()
    needles = [v.encode() for v in (*PLANTED.values(), tag)]
    sweep = work / "out" / "sweeps" / "sec"
    files = {f.resolve() for f in sweep.rglob("*") if f.is_file()}
    [script] = [f for f in files if f.name.endswith("_submission.sh")]
    assert all(n in script.read_bytes() for n in needles[:3]) and tag.encode() not in script.read_bytes()
    assert [(str(f), n) for f in files - {script} for n in needles if n in f.read_bytes()] == []
    assert not any(n.decode() in console.out + console.err for n in needles)
    assert {oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {"0o600"}

    assert subprocess.run(["bash", str(scripts / "job.sh")], cwd=work, timeout=60).returncode == 0
    env = dict(e.split("=", 1) for e in (record / "env").read_bytes().decode().split("\0") if "=" in e)
    assert {k: env.get(k) for k in PLANTED} == PLANTED  # what srun (the job) starts with
    [pkl] = [f for f in files if f.name == "100_1_submitted.pkl"]
    for k in PLANTED:
        monkeypatch.setenv(k, env[k])
    assert pickle.loads(pkl.read_bytes()).function.cfg.launcher.env == PLANTED


def test_console_lines_and_error_lines_show_no_secret(tmp_path, capsys):
    from sweeps.cli import main

    planted = [f"+launcher.env.{k}={v}" for k, v in PLANTED.items()]
    assert main(["sweep", "--dry-run", f"paths.output_root={tmp_path}", "sweep.id=d", *planted]) == 0
    assert main(["config", f"paths.output_root={tmp_path}", *planted]) == 0
    bad_value = "hf_" + "n" * 30 + "\nrest"
    assert main(["config", f"+launcher.env.HF_TOKEN='{bad_value}'"]) == 2
    assert main(["sweep", "--dry-run", "launcher=slurm", "+launcher.sbatch_extra.comment='x sk-" + "s" * 20
                 + "\n'"]) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    assert [v for v in [*PLANTED.values(), "n" * 30, "s" * 20] if v in text] == []
    assert f"HF_TOKEN: {REDACTED}" in out.out and f"+launcher.env.DB_PASS={REDACTED}" in out.out  # not vacuous
    assert out.err.splitlines() == [
        f"config error: launcher.env.HF_TOKEN='{REDACTED}': control characters (newline, CR, tab, escape, NUL, "
        "U+2028, ...) are not allowed",
        f"config error: launcher.sbatch_extra.comment='x {REDACTED}\\n': control characters (newline, CR, tab, "
        "escape, NUL, U+2028, ...) are not allowed"]
