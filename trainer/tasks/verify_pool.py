"""A pool of math-verify worker processes with a hard deadline per call.

``concurrent.futures.ProcessPoolExecutor`` cannot kill one stuck worker (a future that never ends
keeps its process), so this is a small hand-written pool: one pipe per worker, one call in flight
per worker, ``multiprocessing.connection.wait`` for whichever answers first. A call past its deadline
kills its worker (SIGKILL), respawns it and is scored ``timeout``; a worker that dies is respawned and
its call scored ``error``. No signal is used in the calling process, so the pool works from any
thread and leaves the caller's SIGALRM alone. Workers come from a forkserver that preloads
``trainer.tasks.verify_worker`` (math-verify imported once): a respawn is a fork, milliseconds.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait

STARTUP_TIMEOUT_S = 120.0
"""How long a fresh worker may take to import math-verify and say it is ready."""


@dataclass(frozen=True)
class Verdict:
    status: str
    """``ok``, ``timeout`` (past the deadline: the worker was killed) or ``error`` (the verifier raised)."""
    value: object = None
    """The worker's answer when ``ok``: a bool for ``verify``, a count of parsed expressions for ``gold``."""
    detail: str = ""


class VerifyPool:
    """``workers`` math-verify processes; ``run(jobs)`` answers each job within ``timeout_s`` of its start."""

    def __init__(self, workers: int, timeout_s: float):
        if workers < 1 or timeout_s <= 0:
            raise ValueError(f"VerifyPool needs workers >= 1 and timeout_s > 0, got {workers}, {timeout_s}")
        self.workers, self.timeout_s = workers, float(timeout_s)
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["trainer.tasks.verify_worker"])
        self._procs: list = [None] * workers
        self._conns: list = [None] * workers
        self._lock = threading.Lock()
        self.respawns = 0

    def _spawn(self, i: int) -> None:
        from trainer.tasks import verify_worker

        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=verify_worker.serve, args=(child,), daemon=True, name=f"math-verify-{i}")
        proc.start()
        child.close()
        try:
            ready = parent.poll(STARTUP_TIMEOUT_S) and parent.recv()[0] == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            proc.kill()
            raise RuntimeError(f"math-verify worker {i} exited or was silent {STARTUP_TIMEOUT_S:.0f} s at start (a "
                               "script that builds the task needs a `__main__` guard; docs/rewards.md)")
        self._procs[i], self._conns[i] = proc, parent

    def _kill(self, i: int) -> None:
        proc, conn = self._procs[i], self._conns[i]
        self._procs[i] = self._conns[i] = None
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.kill()
            proc.join(5)

    def run(self, jobs: list[tuple[str, str, str]]) -> list[Verdict]:
        """Each ``(kind, gold, pred)`` job's verdict, in order; never raises for a job's sake."""
        with self._lock:
            return self._run(jobs)

    def _run(self, jobs):
        results: list = [None] * len(jobs)
        pending = deque(range(len(jobs)))
        busy: dict[int, tuple[int, float]] = {}  # worker -> (job, deadline)
        while pending or busy:
            for i in range(self.workers):
                if not pending:
                    break
                if i in busy:
                    continue
                if self._procs[i] is None or not self._procs[i].is_alive():
                    self._kill(i)
                    self._spawn(i)
                j = pending.popleft()
                try:
                    self._conns[i].send(jobs[j])
                except (BrokenPipeError, OSError) as e:
                    results[j] = Verdict("error", detail=f"worker pipe: {e}")
                    self._kill(i)
                    continue
                busy[i] = (j, time.monotonic() + self.timeout_s)
            if not busy:
                continue
            by_conn = {self._conns[i]: i for i in busy}
            left = min(d for _, d in busy.values()) - time.monotonic()
            for conn in wait(list(by_conn), timeout=max(left, 0.0)):
                i = by_conn[conn]
                j, _ = busy.pop(i)
                try:
                    status, value = conn.recv()
                    results[j] = Verdict("ok", value) if status == "ok" else Verdict("error", detail=str(value))
                except (EOFError, OSError) as e:  # the worker died mid-call (e.g. killed by the OOM killer)
                    results[j] = Verdict("error", detail=f"worker died: {e!r}")
                    self._kill(i)
                    self.respawns += 1
            now = time.monotonic()
            for i, (j, deadline) in list(busy.items()):
                if now >= deadline:
                    del busy[i]
                    results[j] = Verdict("timeout", detail=f"over {self.timeout_s:g} s")
                    self._kill(i)
                    self.respawns += 1
        return results

    def close(self) -> None:
        for i in range(self.workers):
            self._kill(i)


_POOLS: dict[tuple[int, float], VerifyPool] = {}


def shared_pool(workers: int, timeout_s: float) -> VerifyPool:
    """One pool per (workers, timeout) in this process, closed at exit: tasks built twice share it."""
    key = (int(workers), float(timeout_s))
    if key not in _POOLS:
        _POOLS[key] = VerifyPool(*key)
    return _POOLS[key]


@atexit.register
def _close_all() -> None:
    for pool in _POOLS.values():
        pool.close()
