"""How long things took and how long they will take, as a person reads it in a console or a job log.

Shared by the trainer's step lines (``trainer.run``) and the local launcher's progress lines
(``sweeps.launch_local``): ``elapsed 1:05, ETA 3:20``. Stdlib only. The ETA is the work left at the
rate measured since the work began; there is none before a first unit of work is done.
"""

from __future__ import annotations

import time
from typing import Optional


def duration(seconds: Optional[float]) -> str:
    """``0.4s``, ``42s``, ``3:05`` (min:s), ``1:02:03`` (h:min:s); ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    if seconds < 9.95:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Eta:
    """Time left for ``total`` units at the rate observed since the clock started with ``done`` units
    done (start it when the work starts: after a warm start and a model load, which would make
    the rate look slower than it is)."""

    def __init__(self, total: int, done: int = 0, clock=time.time):
        self.total, self.clock = total, clock
        self.t0, self.base = clock(), done

    def left(self, done: int) -> Optional[float]:
        """Seconds until ``total``; None before any unit was done since the clock started."""
        if done >= self.total:
            return 0.0
        spent = self.clock() - self.t0
        if done <= self.base or spent <= 0:
            return None
        return (self.total - done) * spent / (done - self.base)


def progress_text(elapsed_s: float, eta: Optional[Eta], done: int) -> str:
    """``elapsed 1:05, ETA 3:20`` (``ETA ?`` while no rate is known)."""
    return f"elapsed {duration(elapsed_s)}, ETA {duration(eta.left(done) if eta is not None else None)}"
