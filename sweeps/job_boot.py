"""The first code a launched job runs: hold the stop signals until the job's own handler is there.

A job's Python imports numpy, submitit, Hydra and the config schema before ``CellJob.__call__``
installs its ``StopFlag``; a USR2/TERM/INT/HUP in that window would kill it with the default action,
leaving no record and a FAILED job. SLURM sends ``--signal=USR2@N`` up to a scheduler period early, so
with a short time limit (or a preemption, which can come at any time) the warning can land in the
first second of the job. Launchers start the job as ``python -m sweeps.job_boot -m
submitit.core._submit FOLDER`` instead of ``python -m submitit.core._submit FOLDER``: this module
(stdlib only, so it takes milliseconds) records the signals it gets, runs submitit's entry point, and
``StopFlag.install`` replays what was held. What no Python code can cover is the interpreter's own
start (tens of milliseconds after the task's exec): a signal there still kills the task.
"""

from __future__ import annotations

import runpy
import signal
import sys

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP)
_held: list[int] = []


def _hold(signum, _frame) -> None:
    _held.append(signum)


def hold() -> None:
    for sig in HELD_SIGNALS:
        signal.signal(sig, _hold)


def take() -> list[int]:
    """The signals received since ``hold()``, in order (and forget them)."""
    out = list(_held)
    _held.clear()
    return out


def boot(argv: list[str]) -> None:
    """``argv``: ``[-u] -m MODULE ARGS...`` (what submitit appends to its ``python`` command)."""
    hold()
    if argv[:1] == ["-u"]:  # the interpreter was started with -u already (the launcher's command)
        argv = argv[1:]
    if len(argv) < 2 or argv[0] != "-m":
        sys.exit(f"sweeps.job_boot: expected [-u] -m MODULE ARGS..., got {argv}")
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    # run as a script this file is __main__: use the importable module, whose state StopFlag reads
    from sweeps import job_boot

    job_boot.boot(sys.argv[1:])
