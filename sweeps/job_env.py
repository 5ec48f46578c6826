"""What a launcher gives a job besides its pickle: ``launcher.env`` in the job's environment, and
files only their owner can read.

Secrets travel in the environment (``launcher.env``), never in a record or a pickle
(``trainer.secrets``): the SLURM launcher exports them in the sbatch script, the local launcher
puts them in the environment its job process starts with. Everything a launcher writes for a job
(submitit's pickles, the sbatch script, logs) is written under umask 077, and so is everything the
job writes: a child process inherits the umask, and SLURM runs a job with its submitter's.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator, Mapping

PRIVATE_UMASK = 0o077  # files 0600, directories 0700
_ENV_LOCK = threading.Lock()  # os.environ is one per process; tune's workers submit from threads


@contextmanager
def private_files() -> Iterator[None]:
    """Files created meanwhile (by this process and the processes it starts) are the owner's only."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


@contextmanager
def job_environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` on top of this process's environment while a submitit ``LocalExecutor`` starts a job:
    it starts each job with a copy of ``os.environ`` and takes no environment of its own. The values
    reach the job's environment and neither a file nor a command line (``ps`` shows command lines)."""
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update({str(k): str(v) for k, v in env.items()})
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
