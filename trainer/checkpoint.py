"""Resumable training state of one run: ``<run_dir>/checkpoint/``.

A checkpoint is everything a run needs to continue as if it had never stopped: the engine's
weights and optimizer (``engine.save_checkpoint``, torch or DeepSpeed), the reward-balanced buffer,
the step, the run summary so far, and the RNG states. The trainer reseeds its sampling and
shuffling from (seed, step) every step and ``PromptStream`` positions are a pure function of the
step, so restoring model + optimizer + buffer + step makes the resumed run bitwise identical to
an uninterrupted one; the RNG states are saved anyway, for code that draws outside those streams.

Layout (crash-safe: a checkpoint is complete before ``latest`` names it)::

    checkpoint/step_000040/engine.pt (or DeepSpeed's files)
    checkpoint/step_000040/trainer_state.pt
    checkpoint/latest          # "step_000040", replaced atomically, then older steps are removed

A checkpoint that cannot be read (a truncated or missing file) raises :class:`CorruptCheckpoint`,
naming the file: the run fails saying so, and the next attempt moves the checkpoint aside
(``move_aside``: ``checkpoint.corrupt-<time>/``, kept for inspection) and starts afresh.

``trainer_state.pt`` is loaded with ``weights_only=True``: tensors, plain containers and numbers,
plus the update buffer's payloads, which are grpolab's own dataclasses of tensors (``ScoredBatch``,
``RolloutBatch``), allowed by name for that one load (``SAFE_TYPES``). Allowing two classes keeps
the buffer's state exactly what the buffer holds (no conversion to keep in step with their fields)
while any other global in the file is still refused. The numpy RNG state is stored as a tensor.
"""

from __future__ import annotations

import datetime as dt
import pickle
import random
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from trainer import distributed
from trainer.rollout.base import RolloutBatch
from trainer.run_record import CHECKPOINT_DIR, atomic_write_text
from trainer.scored_batch import ScoredBatch

FORMAT_VERSION = 1
SAFE_TYPES = (ScoredBatch, RolloutBatch)  # what an update buffer's state holds besides tensors and containers
# What a damaged file raises while it is read (a truncated zip, a cut pickle, a missing file, a key or
# a tensor shape that does not fit); anything else (out of memory, a bug) is not called corruption.
UNREADABLE = (OSError, EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError, ValueError,
              TypeError, AttributeError, UnicodeDecodeError)


class CorruptCheckpoint(Exception):
    """The latest checkpoint of a run cannot be read: ``file`` says which file, ``cause`` how."""

    def __init__(self, run_dir: str | Path, file: Path, cause: str):
        self.file, self.cause = Path(file), cause
        self.rel = self.file.relative_to(run_dir) if self.file.is_relative_to(run_dir) else self.file
        super().__init__(f"unreadable checkpoint {self.rel}: {cause}")

    def error(self, step: int) -> dict:
        """The summary's ``error`` of the run that found it; ``checkpoint`` tells the next attempt."""
        return {"step": step, "checkpoint": str(self.rel),
                "cause": f"{self}; a re-run moves the checkpoint aside and starts this run afresh"}


@dataclass
class TrainingState:
    """What is restored besides the engine: where the run was and what it had recorded."""

    step: int
    config_hash: str
    seed: int
    summary: dict
    buffer: Optional[dict] = None  # RewardBalancedBuffer.state_dict() when reward balancing is on
    rollout: Optional[dict] = None  # LaggedRollout.state_dict() when rollout.async_steps > 0
    rng: Optional[dict] = None


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    except ImportError:  # pragma: no cover - numpy ships with torch
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "numpy" in state:
        import numpy as np

        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: str | Path, engine, state: TrainingState, rank: int = 0) -> Path:
    """Write a checkpoint for ``state.step`` and make it the latest; return its directory.

    ``engine.save_checkpoint`` is collective under DeepSpeed (every rank calls ``save``); only rank 0
    writes the trainer state and moves the ``latest`` pointer."""
    root = checkpoint_root(run_dir)
    name = f"step_{state.step:06d}"
    step_dir = root / name
    if rank == 0 and step_dir.exists():
        shutil.rmtree(step_dir)  # a partial write from an attempt that died mid-save
    distributed.barrier()  # no rank writes its shard into the directory rank 0 is still clearing
    step_dir.mkdir(parents=True, exist_ok=True)
    engine.save_checkpoint(step_dir, client_state={"step": state.step})
    if rank != 0:
        return step_dir
    payload = {"format": FORMAT_VERSION, **state.__dict__, "rng": state.rng or rng_state()}
    tmp = step_dir / "trainer_state.pt.tmp"
    torch.save(payload, tmp)
    tmp.replace(step_dir / "trainer_state.pt")
    atomic_write_text(root / "latest", name + "\n")
    for old in root.glob("step_*"):
        if old.name != name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return step_dir


def latest(run_dir: str | Path) -> Optional[Path]:
    """The directory ``checkpoint/latest`` names (a complete checkpoint was written there), or None
    when there is no ``latest``: no checkpoint was ever completed. ``CorruptCheckpoint`` when
    ``latest`` itself cannot be read."""
    root = checkpoint_root(run_dir)
    try:
        name = (root / "latest").read_bytes().decode("utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptCheckpoint(run_dir, root / "latest", f"{type(e).__name__}: {e}") from None
    if not name.startswith("step_") or "/" in name:
        raise CorruptCheckpoint(run_dir, root / "latest", f"names {name!r}, not a step directory")
    return root / name


def peek_step(run_dir: str | Path) -> Optional[int]:
    """The step of the latest checkpoint (from its directory's name), or None; never raises."""
    try:
        step_dir = latest(run_dir)
    except CorruptCheckpoint:
        return None
    if step_dir is None or not (step_dir / "trainer_state.pt").is_file():
        return None
    digits = step_dir.name.removeprefix("step_")
    return int(digits) if digits.isdigit() else None


def peek(run_dir: str | Path) -> Optional[TrainingState]:
    """The trainer state of the latest checkpoint without touching the engine (or None)."""
    step_dir = latest(run_dir)
    if step_dir is None:
        return None
    file = step_dir / "trainer_state.pt"
    try:
        with torch.serialization.safe_globals(list(SAFE_TYPES)):
            payload: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=True)
        payload.pop("format", None)
        return TrainingState(**payload)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            raise  # a type this code does not allow (a bug, not a damaged file): say so as it is
        raise CorruptCheckpoint(run_dir, file, f"{type(e).__name__}: {_first_line(e)}") from None
    except UNREADABLE as e:
        raise CorruptCheckpoint(run_dir, file, f"{type(e).__name__}: {_first_line(e)}") from None


def load(run_dir: str | Path, engine) -> Optional[TrainingState]:
    """Restore the engine (weights, optimizer) and RNG states from the latest checkpoint and return
    the rest of the state; None when there is no checkpoint. ``CorruptCheckpoint`` names the file
    that cannot be read."""
    state = peek(run_dir)
    if state is None:
        return None
    step_dir = latest(run_dir)
    try:
        engine.load_checkpoint(step_dir)
    except torch.OutOfMemoryError:
        raise
    except UNREADABLE as e:
        named = getattr(e, "filename", None)  # a missing file names itself
        file = Path(named) if named else step_dir / "engine.pt"
        if not named and not file.exists():
            file = step_dir  # another engine's layout (DeepSpeed): the directory
        raise CorruptCheckpoint(run_dir, file, f"{type(e).__name__}: {_first_line(e)}") from None
    if state.rng:
        set_rng_state(state.rng)
    return state


def move_aside(run_dir: str | Path) -> Path:
    """Rename ``checkpoint/`` to ``checkpoint.corrupt-<UTC time>/`` (kept for inspection); return it."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside = Path(run_dir) / f"{CHECKPOINT_DIR}.corrupt-{stamp}"
    n = 1
    while aside.exists():
        n += 1
        aside = Path(run_dir) / f"{CHECKPOINT_DIR}.corrupt-{stamp}-{n}"
    checkpoint_root(run_dir).rename(aside)
    return aside


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def remove(run_dir: str | Path) -> None:
    shutil.rmtree(checkpoint_root(run_dir), ignore_errors=True)
