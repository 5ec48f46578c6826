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
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from trainer import distributed
from trainer.run_record import CHECKPOINT_DIR, atomic_write_text

FORMAT_VERSION = 1


@dataclass
class TrainingState:
    """What is restored besides the engine: where the run was and what it had recorded."""

    step: int
    config_hash: str
    seed: int
    summary: dict
    buffer: Optional[dict] = None  # RewardBalancedBuffer.state_dict() when reward balancing is on
    rng: Optional[dict] = None


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
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

        np.random.set_state(state["numpy"])
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
    """The directory of the newest complete checkpoint, or None."""
    root = checkpoint_root(run_dir)
    try:
        name = (root / "latest").read_text().strip()
    except FileNotFoundError:
        return None
    step_dir = root / name
    return step_dir if (step_dir / "trainer_state.pt").is_file() else None


def peek(run_dir: str | Path) -> Optional[TrainingState]:
    """The trainer state of the latest checkpoint without touching the engine (or None)."""
    step_dir = latest(run_dir)
    if step_dir is None:
        return None
    payload: dict[str, Any] = torch.load(step_dir / "trainer_state.pt", map_location="cpu", weights_only=False)
    payload.pop("format", None)
    return TrainingState(**payload)


def load(run_dir: str | Path, engine) -> Optional[TrainingState]:
    """Restore the engine (weights, optimizer) and RNG states from the latest checkpoint and return
    the rest of the state; None when there is no checkpoint."""
    state = peek(run_dir)
    if state is None:
        return None
    engine.load_checkpoint(latest(run_dir))
    if state.rng:
        set_rng_state(state.rng)
    return state


def remove(run_dir: str | Path) -> None:
    shutil.rmtree(checkpoint_root(run_dir), ignore_errors=True)
