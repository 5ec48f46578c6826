"""Who may write a record: one process per run dir, one invocation at a time on a sweep's plan.

``run_lock``: held by the process training a run for the whole run (rank 0 of a multi-process
one), from before it reads the record until after the last write. Another process that tries to
run the same dir gets ``RunBusy`` before it has written anything. ``sweep_lock``: held while an
invocation reads and rewrites ``sweep.json`` and ``jobs.json``; a second one waits for it.

Both are ``flock`` locks (``filelock.FileLock``): the kernel drops them when their process dies, so a
SIGKILL leaves no stale lock behind. They hold across processes of one host, and across hosts on
shared filesystems whose ``flock`` is cluster-wide (NFSv4, Lustre mounted with ``flock``, GPFS).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from trainer.run_record import RUN_LOCK_FILE, SWEEP_LOCK_FILE


class RunBusy(RuntimeError):
    """Another process is writing this run dir."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        super().__init__(f"{run_dir} is being written by another process (its lock {RUN_LOCK_FILE} is held); "
                         "nothing was written: wait for it, or see grpolab status")


def _flock(path: Path, timeout: float) -> FileLock:
    """A kernel ``flock`` on ``path`` (0600), never a soft lock file a killed holder would leave."""
    return FileLock(path, timeout=timeout, is_singleton=False, preserve_lock_file=True, mode=0o600)


def try_run_lock(run_dir: str | Path) -> FileLock:
    """The run dir's lock, acquired; ``RunBusy`` when another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = _flock(run_dir / RUN_LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusy(run_dir) from None
    return lock


def run_is_locked(run_dir: str | Path) -> bool:
    """Whether a process holds the run dir's lock now (takes it for an instant to find out)."""
    path = Path(run_dir) / RUN_LOCK_FILE
    if not path.exists():
        return False
    lock = _flock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


@contextmanager
def sweep_lock(sweep_dir: str | Path, timeout_s: float = 120.0) -> Iterator[None]:
    """Hold the sweep's plan lock; wait up to ``timeout_s`` for another invocation to let it go."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock = _flock(sweep_dir / SWEEP_LOCK_FILE, timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise TimeoutError(f"{sweep_dir}: another grpolab invocation has held {SWEEP_LOCK_FILE} for more than "
                           f"{timeout_s:.0f} s") from None
    try:
        yield
    finally:
        lock.release()
