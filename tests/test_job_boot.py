"""A stop signal that reaches a job while it is still starting (before ``CellJob`` installs its
``StopFlag``) is held by ``sweeps.job_boot`` and handled once the flag is there, not fatal.

SLURM sends ``--signal=USR2@N`` up to a scheduler period early; on a short time limit, or on a
preemption, it can arrive while the job imports. Real processes, real signals; no training."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# a job's entry point that gets signalled before it can install a handler of its own
PROBE = textwrap.dedent("""
    import os, signal, sys
    for name in sys.argv[1:]:
        os.kill(os.getpid(), getattr(signal, name))  # as SLURM would, while the job imports
    from sweeps.job import StopFlag
    flag = StopFlag()
    flag.install()
    print("flag", flag.name, flag.count, "argv", *sys.argv[1:])
""")


def _run(tmp_path: Path, *python_args: str, signals=("SIGUSR2",)) -> subprocess.CompletedProcess:
    (tmp_path / "probe_entry.py").write_text(PROBE)
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *python_args, "-m", "probe_entry", *signals], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_without_the_boot_an_early_usr2_kills_the_job(tmp_path):
    out = _run(tmp_path, "-u")  # what submitit's own command line does
    assert out.returncode == -signal.SIGUSR2 and "flag" not in out.stdout


@pytest.mark.parametrize("sig", ["SIGUSR2", "SIGTERM", "SIGINT", "SIGHUP"])
def test_the_boot_holds_an_early_signal_and_the_stop_flag_handles_it(tmp_path, sig):
    out = _run(tmp_path, "-u", "-m", "sweeps.job_boot", "-u", signals=(sig,))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["flag", sig, "1", "argv", sig]  # the entry point got its own argv
    assert f"[grpolab] caught {sig} while the job started" in out.stderr


def test_held_signals_are_replayed_in_order_and_term_wins(tmp_path):
    out = _run(tmp_path, "-u", "-m", "sweeps.job_boot", "-u", signals=("SIGUSR2", "SIGTERM"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:3] == ["flag", "SIGTERM", "2"]
    assert out.stderr.index("caught SIGUSR2") < out.stderr.index("caught SIGTERM")


def test_a_malformed_boot_command_says_what_it_expected(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sweeps.job_boot", "probe_entry"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "expected [-u] -m MODULE ARGS" in out.stderr and "Traceback" not in out.stderr


def test_the_slurm_launcher_starts_jobs_through_the_boot(tmp_path):
    from sweeps.compose import compose
    from sweeps.launch_slurm import make_executor

    cfg = compose([f"paths.output_root={tmp_path}", "launcher=slurm_local"])
    executor = make_executor(cfg.launcher, "boot", tmp_path / "logs", None)
    assert " -u -m sweeps.job_boot -u -m submitit.core._submit " in executor._submitit_command_str
